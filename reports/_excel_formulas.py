"""The live ``iterations`` sheet: every prediction, loss, gradient and update is a formula.

Why: the learner of scenario S2 rebuilt Keras in a spreadsheet and got a different
number. This sheet is that spreadsheet done right, and it is *live*: each iteration's
predictions refer to the data cells and to the previous iteration's parameter cells, so
editing the learning-rate cell (or rho, epsilon...) re-runs the whole training in Excel
or LibreOffice.

Every formula is printed by :func:`tracer.math.printing.excel` from the sympy
expressions the checker uses: the model's forward pass ``z = b + sum_j x_j W_j`` and
its activation, the loss's elementwise term and ``sympy.diff`` derivative divided by the
loss's ``divide_by`` factors, and the optimizer's ordered assignments
(:meth:`tracer.math.optimizers.OptimizerRule.equations`), one column per assignment.
The sums over the batch rows (``SUM`` and ``SUMPRODUCT`` over the block of rows) are the
only structure added here: the chain rule of one dense layer, ``dL/dW_jo = sum_i
dL/dz_io x_ij`` and ``dL/db_o = sum_i dL/dz_io``.

What is shown: a dense stack of at most :data:`FORMULA_MAX_LAYERS` layers (a linear
model, or small hidden layers; activations linear/relu/sigmoid/tanh, not softmax), an
elementwise loss (squared error, mse, mae, huber, binary cross-entropies), any optimizer
of :mod:`tracer.math.optimizers`, every step recorded, at most
:data:`FORMULA_MAX_PARAM_ELEMENTS` parameter elements and :data:`FORMULA_MAX_ROWS`
batch rows in all. Hidden layers add, per batch row, their pre-activations ``z``,
outputs ``a``, and on the way back ``dL/da_j = sum_o dL/dz_o W_jo`` (printed from
sympy) and ``dL/dz = dL/da * f'(z)`` with ``f'`` from ``sympy.diff``. Anything else raises :class:`NotShown`
with the reason, and the workbook falls back to values, saying so in the sheet.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from ._excel_cells import EXCEL_MAX_ROWS, ref, rng

#: the largest number of parameter elements (weights + biases) shown as formulas
FORMULA_MAX_PARAM_ELEMENTS = 64
#: the largest number of dense layers shown as formulas
FORMULA_MAX_LAYERS = 3
#: the largest number of batch rows (summed over all iterations) shown as formulas
FORMULA_MAX_ROWS = 250_000

SHEET = "iterations"
DATA_SHEET = "data"


class NotShown(Exception):
    """The trace is outside what the live sheet can show; the message says why."""


@dataclass
class Check:
    """One formula cell and the value the trace recorded for it (for tests and audits)."""

    cell: str
    quantity: str
    step: int
    expected: float


@dataclass
class FormulaSheet:
    """Result of :func:`build`: the rows to write plus where things are."""

    rows: list = field(default_factory=list)            # lists of cell values / formulas
    header_row: int = 0
    checks: list = field(default_factory=list)          # [Check]
    lr_cell: str = ""                                   # the learning-rate cell ($B$5)
    setting_cells: dict = field(default_factory=dict)   # name -> cell
    loss_cells: list = field(default_factory=list)      # per iteration: the batch-loss cell
    after_cells: dict = field(default_factory=dict)     # element label -> [cell per iteration]
    labels: list = field(default_factory=list)          # element labels in order
    n_formulas: int = 0
    widths: dict = field(default_factory=dict)


def _dense_layers(trace):
    model = trace.meta.get("model")
    if not isinstance(model, dict) or model.get("kind") != "dense_stack":
        kind = None if not isinstance(model, dict) else model.get("kind")
        raise NotShown(f"the model is not a declared dense stack (kind {kind!r})")
    layers = model.get("layers") or []
    if not layers or any(layer.get("type", "dense") != "dense" for layer in layers):
        raise NotShown("the model has layers other than dense ones")
    if len(layers) > FORMULA_MAX_LAYERS:
        raise NotShown(f"the model has {len(layers)} layers; live formulas are written for dense stacks of at "
                       f"most {FORMULA_MAX_LAYERS} layers")
    return layers


def analyse(trace):
    """Everything the sheet needs, or NotShown with the reason."""
    from tracer.errors import SteptraceError
    from tracer.math.activations import get_activation
    from tracer.math.losses import get_loss
    from tracer.math.optimizers import get_optimizer

    a = trace.arrays()
    if a.inputs is None:
        raise NotShown("the trace declares no training data (Recorder.set_data was not called)")
    if not a.params or trace.meta.get("capture", {}).get("mode") not in (None, "full"):
        raise NotShown("parameters were not captured in full (summary capture)")
    if trace.meta.get("capture", {}).get("every", 1) != 1:
        raise NotShown("only every k-th step was recorded; a live sheet needs every step")
    n_steps = trace.n_steps
    if n_steps == 0:
        raise NotShown("the trace has no steps")
    if not np.array_equal(a.param_step, np.arange(1, n_steps + 1)) or \
            not np.array_equal(np.asarray(a.steps["step"]), np.arange(1, n_steps + 1)):
        raise NotShown("recorded steps are not consecutive from 1")
    if a.sample_pred is None or not len(a.sample_row) or (a.sample_row < 0).any():
        raise NotShown("the batch rows or predictions of each step were not recorded")
    layers = _dense_layers(trace)
    k = a.inputs.shape[1]
    m = a.targets.shape[1]
    width = k
    out_layers = []
    used = []
    try:
        for i, layer in enumerate(layers):
            wname, bname = layer.get("weight"), layer.get("bias")
            if wname not in a.params or (bname is not None and bname not in a.params):
                raise NotShown(f"layer {i + 1}'s parameters {wname!r}/{bname!r} are not in the trace")
            transpose = bool(layer.get("transpose", False))
            wshape = tuple(a.params[wname]["shape"])
            if len(wshape) != 2:
                raise NotShown(f"weight {wname!r} has shape {wshape}, expected a matrix")
            units = wshape[0] if transpose else wshape[1]
            if (wshape[1] if transpose else wshape[0]) != width:
                raise NotShown(f"weight {wname!r} has shape {wshape}, which does not take {width} inputs")
            act = get_activation(layer.get("activation", "linear"))
            if act.vector:
                raise NotShown("softmax: its formulas are not elementwise")
            out_layers.append({"weight": wname, "bias": bname, "transpose": transpose, "act": act,
                               "k": width, "u": int(units)})
            used += [wname] + ([bname] if bname else [])
            width = int(units)
        if width != m:
            raise NotShown(f"the model gives {width} outputs but the data has {m} targets")
        extra = [p for p in a.params if p not in used]
        if extra:
            raise NotShown(f"the trace has parameters outside the declared layers: {extra}")
        n_elem = sum(int(np.prod(p["shape"])) for p in a.params.values())
        if n_elem > FORMULA_MAX_PARAM_ELEMENTS:
            raise NotShown(f"{n_elem} parameter elements; live formulas are written for at most "
                           f"{FORMULA_MAX_PARAM_ELEMENTS}")
        if len(a.sample_row) > FORMULA_MAX_ROWS:
            raise NotShown(f"{len(a.sample_row)} batch rows in all; live formulas are written for at most "
                           f"{FORMULA_MAX_ROWS}")
        if a.inputs.shape[0] + 1 > EXCEL_MAX_ROWS:
            raise NotShown("the data does not fit on one sheet")
        if trace.meta.get("loss") is None:
            raise NotShown("the loss is not declared in meta (run the checker to identify it)")
        loss = get_loss(trace.meta["loss"])
        if loss.row_wise:
            raise NotShown(f"loss {loss.name} is computed per row, not per element")
        if trace.meta.get("optimizer") is None:
            raise NotShown("the optimizer is not declared in meta")
        rule = get_optimizer(trace.meta["optimizer"])
    except SteptraceError as exc:
        raise NotShown(str(exc)) from None
    return {"k": k, "m": m, "layers": out_layers, "loss": loss, "rule": rule}


def _framework_equations(rule):
    """The rule's assignments as the framework evaluates them.

    Keras computes ``beta**t`` from ``float32(beta)`` (``OptimizerRule.float32_powers``; the
    checker does the same). Those powers get their own settings cell ``beta_1_f32`` so the
    sheet agrees with the run to float64 precision. Returns ``(equations, {name: value})``.
    """
    eqs = rule.equations()
    if not getattr(rule, "float32_powers", False):
        return eqs, {}
    hyper = set(rule.symbols)
    f32 = {}

    def swap(x):
        name = x.base.name + "_f32"
        f32[name] = float(np.float32(float(rule.symbols[x.base.name])))
        return sp.Pow(sp.Symbol(name, positive=True), x.exp)
    out = [(n, e.replace(lambda x: x.is_Pow and isinstance(x.base, sp.Symbol) and x.base.name in hyper, swap))
           for n, e in eqs]
    return out, f32


def _trace_slot(rule_slot: str, recorded) -> str | None:
    """The recorded state slot holding the rule's slot ``rule_slot`` (names differ between
    Keras versions: ``m``/``momentum``, ``v``/``velocity``), or None."""
    from tracer.math import optimizers
    aliases = getattr(optimizers, "_SLOT_ALIASES", {})
    names = [rule_slot, *aliases.get(rule_slot, ())]
    names += [k for k, v in aliases.items() if rule_slot in v]
    return next((n for n in names if n in recorded), None)


def _row_values(a, layers, loss, s, rows, pred):
    """Expected per-row intermediates of step ``s`` from the recorded numbers, computed with
    NumPy (not with the sheet's formulas): z and a of each layer from the parameters before
    the step, the loss terms and dL/dprediction from the recorded predictions (the loss's
    sympy-derived ``per_element`` and ``grad``), then dL/da and dL/dz layer by layer."""
    xb = a.inputs[rows].astype(np.float64)
    yb = a.targets[rows].astype(np.float64)
    zs, acts = [], [xb]
    for ly in layers:
        w = a.params[ly["weight"]]["before"][s].reshape(
            (ly["u"], ly["k"]) if ly["transpose"] else (ly["k"], ly["u"])).astype(np.float64)
        if ly["transpose"]:
            w = w.T
        z = acts[-1] @ w
        if ly["bias"]:
            z = z + a.params[ly["bias"]]["before"][s].astype(np.float64)
        zs.append(z)
        acts.append(ly["act"].f(z))
    out = {"resid": pred - yb, "elem": loss.per_element(pred[None], yb[None])[0],
           "dpred": loss.grad(pred[None], yb[None])[0], "z": zs, "a": acts, "dz": [None] * len(layers),
           "da": [None] * len(layers)}
    g = out["dpred"]
    for li in range(len(layers) - 1, -1, -1):
        ly = layers[li]
        if li < len(layers) - 1:
            nxt = layers[li + 1]
            w = a.params[nxt["weight"]]["before"][s].reshape(
                (nxt["u"], nxt["k"]) if nxt["transpose"] else (nxt["k"], nxt["u"])).astype(np.float64)
            if nxt["transpose"]:
                w = w.T
            g = out["dz"][li + 1] @ w.T
            out["da"][li] = g
        out["dz"][li] = ly["act"].backward(zs[li], acts[li + 1], g)
        g = out["dz"][li]
    return out


def _label(name, shape, idx):
    if int(np.prod(shape)) == 1:
        return name
    return f"{name}[{','.join(str(i) for i in np.unravel_index(idx, shape))}]"


def build(trace) -> FormulaSheet:
    """Lay the live sheet out (rows of values and formula strings); NotShown if it cannot."""
    from tracer.math import printing
    from tracer.math.activations import z as z_sym
    from tracer.math.losses import y_pred, y_true

    info = analyse(trace)
    a = trace.arrays()
    k, m = info["k"], info["m"]
    layers, loss, rule = info["layers"], info["loss"], info["rule"]
    L = len(layers)
    steps = a.steps
    n_steps = trace.n_steps
    out = FormulaSheet()

    # ------------------------------------------------------------ settings block
    rows = out.rows
    rows.append([f"steptrace: {trace.meta.get('framework', '?')} run, {n_steps} iterations - "
                 f"every computed number below is a live formula"])
    rows.append(["Each iteration is a block of rows (one per batch row). Predictions use the data "
                 "sheet and the parameters in the block's first row; those are the previous "
                 "iteration's updated parameters. Edit a setting below and every later iteration "
                 "is recomputed."])
    arch = " -> ".join(f"dense({ly['u']}, {ly['act'].name})" for ly in layers)
    rows.append([f"model: {k} inputs -> {arch}; loss: {loss.describe()}; optimizer: {rule.describe()}"])
    if any(p["before"].dtype.itemsize <= 4 for p in a.params.values()):
        rows.append(["The run computed in float32; this sheet computes in float64, so it agrees with the "
                     "recorded numbers to float32 precision (about 1e-6 relative, less where terms cancel)."])
    rows.append(["setting", "value", "what it is"])
    lr_values = np.asarray(steps.get("lr", np.full(n_steps, np.nan)), dtype=np.float64)
    lr_values = np.where(np.isfinite(lr_values), lr_values, rule.lr)   # not recorded: the declared lr
    lr_const = bool(np.all(np.isfinite(lr_values)) and np.all(lr_values == lr_values[0]))
    lr_value = float(lr_values[0]) if lr_const else rule.lr
    settings = [("lr", lr_value, "learning rate" + ("" if lr_const else
                                                     " (the run changed it: the lr column holds the recorded values)"))]
    for name, value in rule.symbols.items():
        settings.append((name, float(value), f"optimizer hyperparameter {name}"))
    eqs, f32 = _framework_equations(rule)
    for name, value in f32.items():
        base = name[:-len("_f32")]
        settings.append((name, value, f"{base} rounded to float32: the framework computes {base}^t from "
                                      f"this value (it does not follow edits of {base})"))
    consts = {**{k_: float(v_) for k_, v_ in rule.symbols.items()}, **f32}
    init = rule.initial_state(np.zeros(1))
    for slot in rule.slots:
        settings.append((f"initial {slot}", float(init[slot][0]), f"optimizer state {slot} before step 1"))
    for name, value, note in settings:
        rows.append([name, value, note])
        out.setting_cells[name] = ref(2, len(rows), absolute=True)
    out.lr_cell = out.setting_cells["lr"]
    rows.append([])

    # ------------------------------------------------------------ columns
    C = {}
    headers = ["epoch", "batch", "iteration", "t (optimizer step)", "lr", "n (batch rows)", "sample (data row)"]
    for i, h in enumerate(headers, start=1):
        C[h] = i
    c = len(headers) + 1

    def take(n, names):
        nonlocal c
        cols = list(range(c, c + n))
        c += n
        headers.extend(names)
        return cols

    xnames = trace.input_columns or [f"x{j}" for j in range(k)]
    ynames = trace.target_columns or [f"y{o}" for o in range(m)]
    acols = [take(k, xnames)]          # acols[l]: the inputs of layer l (acols[0] = x)
    ycols = take(m, ynames)
    zcols = []                         # zcols[l]: pre-activations of layer l (None when linear)
    for li, ly in enumerate(layers):
        last = li == L - 1
        tag = "" if L == 1 else f"layer {li + 1} "
        if ly["act"].name != "linear":
            zcols.append(take(ly["u"], [f"{tag}z{'' if ly['u'] == 1 else o}" for o in range(ly["u"])]))
        else:
            zcols.append(None)
        if last:
            acols.append(take(m, [f"prediction {yn}" for yn in ynames]))
        else:
            acols.append(take(ly["u"], [f"{tag}a{o} = {ly['act'].name}(z{o})" for o in range(ly["u"])]))
    pcols = acols[L]
    rcols = take(m, [f"residual {yn}" for yn in ynames])
    lcols = take(m, [f"loss term {yn}" for yn in ynames])
    dcols = take(m, [f"dL/dprediction {yn}" for yn in ynames])
    # backward: dL/dz of each layer (the last one from dL/dprediction), dL/da of hidden layers
    gcols = [None] * L                 # gcols[l]: dL/dz of layer l
    hcols = [None] * L                 # hcols[l]: dL/da of hidden layer l
    for li in range(L - 1, -1, -1):
        ly = layers[li]
        tag = "" if L == 1 else f"layer {li + 1} "
        if li < L - 1:
            hcols[li] = take(ly["u"], [f"{tag}dL/da{o}" for o in range(ly["u"])])
        if ly["act"].name != "linear":
            gcols[li] = take(ly["u"], [f"{tag}dL/dz{'' if ly['u'] == 1 else o}" for o in range(ly["u"])])
        else:
            gcols[li] = dcols if li == L - 1 else hcols[li]
    loss_col = take(1, ["batch loss"])[0]
    elements = []   # (param, idx, label, layer, j, o, cols)
    for li, ly in enumerate(layers):
        for pname in [ly["weight"]] + ([ly["bias"]] if ly["bias"] else []):
            shape = tuple(a.params[pname]["shape"])
            for idx in range(int(np.prod(shape))):
                label = _label(pname, shape, idx)
                if pname == ly["weight"]:
                    r_, s_ = np.unravel_index(idx, shape)
                    j, o = (int(s_), int(r_)) if ly["transpose"] else (int(r_), int(s_))
                else:
                    j, o = None, idx
                cols = {"before": c, "grad": c + 1}
                headers += [f"{label} before", f"dL/d({label})"]
                c += 2
                eq_cols, last = [], {}
                for e_i, (name, _) in enumerate(eqs):
                    eq_cols.append(c)
                    last[name] = e_i
                    c += 1
                final_p = last.get("p")
                for e_i, (name, _) in enumerate(eqs):
                    headers.append(f"{label} after" if e_i == final_p else f"{label}: {name}")
                cols["eq"], cols["last"] = eq_cols, last
                elements.append((pname, idx, label, li, j, o, cols))
                out.labels.append(label)
                out.after_cells[label] = []
    rows.append(headers)
    out.header_row = len(rows)

    # ------------------------------------------------------------ formula templates
    # printed once from sympy with {placeholders}, filled in per row
    n_sym = sp.Symbol("n", positive=True)
    factors = [n_sym if f == "n" else (sp.Integer(m) if f == "m" else sp.nsimplify(f)) for f in loss.divide_by]
    div = sp.Mul(*factors) if factors else sp.Integer(1)
    elem_expr, _ = loss.elementwise
    total_sym = sp.Symbol("TOTAL", real=True)
    u_sym = sp.Symbol("U", real=True)
    ph = {}
    Wsym, Bsym = {}, {}
    for e_i, (pname, idx, label, li, j, o, cols) in enumerate(elements):
        sym = sp.Symbol(f"E{e_i}", real=True)
        ph[sym] = f"{{E{e_i}}}"
        if j is None:
            Bsym[(li, o)] = sym
        else:
            Wsym[(li, j, o)] = sym
    tpl = {"z": {}, "act": {}, "dz": {}, "da": {}}
    for li, ly in enumerate(layers):
        ins = [sp.Symbol(f"A{li}_{j}", real=True) for j in range(ly["k"])]
        for j, sym in enumerate(ins):
            ph[sym] = f"{{A{li}_{j}}}"
        for o in range(ly["u"]):
            zexpr = sum((ins[j] * Wsym[(li, j, o)] for j in range(ly["k"])), sp.Integer(0))
            if (li, o) in Bsym:
                zexpr = zexpr + Bsym[(li, o)]
            tpl["z"][(li, o)] = printing.excel(zexpr, ph)
            if ly["act"].name != "linear":
                zc = {z_sym: f"{{Z{li}_{o}}}"}
                tpl["act"][(li, o)] = printing.excel(ly["act"].expr, zc)
                dsrc = f"{{D{o}}}" if li == L - 1 else f"{{H{li}_{o}}}"
                tpl["dz"][(li, o)] = printing.excel(u_sym * ly["act"].derivative, {u_sym: dsrc, **zc})
        if li < L - 1:   # dL/da_j of this hidden layer = sum_o dL/dz_(next, o) * W_next[j, o]
            nxt = layers[li + 1]
            gs = [sp.Symbol(f"G{li + 1}_{o}", real=True) for o in range(nxt["u"])]
            gph = dict(ph)
            for o, sym in enumerate(gs):
                gph[sym] = f"{{G{li + 1}_{o}}}"
            for j in range(ly["u"]):
                tpl["da"][(li, j)] = printing.excel(
                    sum((gs[o] * Wsym[(li + 1, j, o)] for o in range(nxt["u"])), sp.Integer(0)), gph)
    lc_t = [{y_pred: f"{{P{o}}}", y_true: f"{{Y{o}}}", n_sym: "{n}"} for o in range(m)]
    tpl["resid"] = [printing.excel(y_pred - y_true, lc_t[o]) for o in range(m)]
    tpl["elem"] = [printing.excel(elem_expr, lc_t[o]) for o in range(m)]
    tpl["dpred"] = [printing.excel(loss.derivative / div, lc_t[o]) for o in range(m)]
    batch_loss_tpl = printing.excel(total_sym / div, {total_sym: "{total}", n_sym: "{n}"})

    # ------------------------------------------------------------ trace values
    order = np.argsort(a.sample_step, kind="stable")
    s_row = a.sample_row[order]
    s_pred = a.sample_pred[order]
    bounds = np.searchsorted(a.sample_step[order], np.arange(1, n_steps + 2))
    t_values = np.asarray(steps.get("opt_step", np.arange(1, n_steps + 1)), dtype=np.float64)
    if not np.all(np.isfinite(t_values)):
        t_values = np.arange(1, n_steps + 1, dtype=np.float64)
    loss_values = np.asarray(steps.get("loss"), dtype=np.float64)
    epochs = np.asarray(steps["epoch"])
    batches = np.asarray(steps["batch"])

    eq_funcs = []
    for name, expr in eqs:
        args = sorted(expr.free_symbols, key=lambda x: x.name)
        eq_funcs.append(([x.name for x in args], sp.lambdify(args, expr, "math")))
    slot_rec = {pname: {slot: _trace_slot(slot, a.params[pname]["slots"]) for slot in rule.slots}
                for pname in a.params}

    prev_after, prev_slot = {}, {}
    n_formulas = 0
    for s in range(n_steps):
        lo, hi = bounds[s], bounds[s + 1]
        if hi <= lo:
            raise NotShown(f"step {s + 1} has no recorded batch rows")
        r0 = len(rows) + 1
        r1 = r0 + (hi - lo) - 1
        step = s + 1
        ncell = ref(C["n (batch rows)"], r0, absolute=True)
        tcell = ref(C["t (optimizer step)"], r0, absolute=True)
        lrcell = ref(C["lr"], r0, absolute=True)
        fmt = {"n": ncell}
        for e_i, el in enumerate(elements):
            fmt[f"E{e_i}"] = ref(el[6]["before"], r0, absolute=True)
        block = []
        ev = _row_values(a, layers, loss, s, s_row[lo:hi], s_pred[lo:hi].astype(np.float64))
        for i in range(lo, hi):
            r = r0 + (i - lo)
            ri = i - lo
            for o in range(m):
                out.checks.append(Check(ref(rcols[o], r), "residual", step, float(ev["resid"][ri, o])))
                out.checks.append(Check(ref(lcols[o], r), "loss term", step, float(ev["elem"][ri, o])))
                out.checks.append(Check(ref(dcols[o], r), "dL/dprediction", step, float(ev["dpred"][ri, o])))
            for li in range(L):
                if zcols[li]:
                    for o, col_ in enumerate(zcols[li]):
                        out.checks.append(Check(ref(col_, r), f"layer {li + 1} z", step, float(ev["z"][li][ri, o])))
                    for o, col_ in enumerate(gcols[li]):
                        out.checks.append(Check(ref(col_, r), f"layer {li + 1} dL/dz", step,
                                                float(ev["dz"][li][ri, o])))
                if li < L - 1:
                    for o, col_ in enumerate(acols[li + 1]):
                        out.checks.append(Check(ref(col_, r), f"layer {li + 1} a", step,
                                                float(ev["a"][li + 1][ri, o])))
                    for o, col_ in enumerate(hcols[li]):
                        out.checks.append(Check(ref(col_, r), f"layer {li + 1} dL/da", step,
                                                float(ev["da"][li][ri, o])))
            row = [None] * (c - 1)
            row[C["epoch"] - 1] = int(epochs[s])
            row[C["batch"] - 1] = int(batches[s])
            row[C["iteration"] - 1] = step
            sample = int(s_row[i])
            row[C["sample (data row)"] - 1] = sample
            drow = sample + 2
            for li in range(L + 1):
                for j, col_ in enumerate(acols[li]):
                    fmt[f"A{li}_{j}"] = ref(col_, r)
            for li in range(L):
                if zcols[li]:
                    for o, col_ in enumerate(zcols[li]):
                        fmt[f"Z{li}_{o}"] = ref(col_, r)
                for o, col_ in enumerate(gcols[li]):
                    fmt[f"G{li}_{o}"] = ref(col_, r)
                if hcols[li]:
                    for o, col_ in enumerate(hcols[li]):
                        fmt[f"H{li}_{o}"] = ref(col_, r)
            for j in range(k):
                row[acols[0][j] - 1] = f"={DATA_SHEET}!{ref(2 + j, drow)}"
                out.checks.append(Check(ref(acols[0][j], r), "x", step, float(a.inputs[sample, j])))
            for o in range(m):
                row[ycols[o] - 1] = f"={DATA_SHEET}!{ref(2 + k + o, drow)}"
                out.checks.append(Check(ref(ycols[o], r), "y", step, float(a.targets[sample, o])))
                fmt[f"Y{o}"], fmt[f"P{o}"], fmt[f"D{o}"] = ref(ycols[o], r), ref(pcols[o], r), ref(dcols[o], r)
            for li, ly in enumerate(layers):
                for o in range(ly["u"]):
                    if zcols[li]:
                        row[zcols[li][o] - 1] = tpl["z"][(li, o)].format(**fmt)
                        row[acols[li + 1][o] - 1] = tpl["act"][(li, o)].format(**fmt)
                        row[gcols[li][o] - 1] = tpl["dz"][(li, o)].format(**fmt)
                        n_formulas += 3
                    else:
                        row[acols[li + 1][o] - 1] = tpl["z"][(li, o)].format(**fmt)
                        n_formulas += 1
                    if hcols[li]:
                        row[hcols[li][o] - 1] = tpl["da"][(li, o)].format(**fmt)
                        n_formulas += 1
            for o in range(m):
                out.checks.append(Check(ref(pcols[o], r), "prediction", step, float(s_pred[i, o])))
                row[rcols[o] - 1] = tpl["resid"][o].format(**fmt)
                row[lcols[o] - 1] = tpl["elem"][o].format(**fmt)
                row[dcols[o] - 1] = tpl["dpred"][o].format(**fmt)
            n_formulas += k + 4 * m
            block.append(row)
        first = block[0]
        first[C["t (optimizer step)"] - 1] = float(t_values[s])
        first[C["lr"] - 1] = f"={out.lr_cell}" if lr_const else float(lr_values[s])
        if lr_const:
            out.checks.append(Check(lrcell, "lr", step, lr_value))
        first[C["n (batch rows)"] - 1] = int(hi - lo)
        total = f"SUM({ref(lcols[0], r0)}:{ref(lcols[-1], r1)})"
        first[loss_col - 1] = batch_loss_tpl.format(total=total, n=ncell)
        loss_cell = ref(loss_col, r0)
        out.loss_cells.append(loss_cell)
        if np.isfinite(loss_values[s]):
            out.checks.append(Check(loss_cell, "loss", step, float(loss_values[s])))
        for (pname, idx, label, li, j, o, cols) in elements:
            vals = a.params[pname]
            bc = ref(cols["before"], r0)
            if s == 0:
                first[cols["before"] - 1] = float(vals["before"][s, idx])
            else:
                first[cols["before"] - 1] = f"={prev_after[label]}"
                out.checks.append(Check(bc, "before", step, float(vals["before"][s, idx])))
            gc = ref(cols["grad"], r0)
            dz_rng = rng(gcols[li][o], r0, r1)
            if j is not None:
                first[cols["grad"] - 1] = f"=SUMPRODUCT({dz_rng},{rng(acols[li][j], r0, r1)})"
            else:
                first[cols["grad"] - 1] = f"=SUM({dz_rng})"
            if np.isfinite(vals["grad"][s, idx]):
                out.checks.append(Check(gc, "grad", step, float(vals["grad"][s, idx])))
            env = {"p": bc, "g": gc, "t": tcell, "lr": lrcell}
            for name in consts:
                env[name] = out.setting_cells[name]
            for slot in rule.slots:
                env[slot] = prev_slot.get((label, slot), out.setting_cells[f"initial {slot}"])
            # expected value of every assignment, from the recorded numbers of this step
            num = {"p": float(vals["before"][s, idx]), "g": float(vals["grad"][s, idx]),
                   "t": float(t_values[s]), "lr": lr_value if lr_const else float(lr_values[s])}
            num.update(consts)
            for slot in rule.slots:
                rec = slot_rec[pname][slot]
                num[slot] = (float(init[slot][0]) if s == 0 else
                             float(vals["slots"][rec][s - 1, idx]) if rec is not None else np.nan)
            for e_i, (name, expr) in enumerate(eqs):
                cells = {}
                for sym in expr.free_symbols:
                    if sym.name not in env:
                        raise NotShown(f"optimizer formula {name} uses {sym.name}, which has no cell")
                    cells[sym] = env[sym.name]
                cc = cols["eq"][e_i]
                first[cc - 1] = printing.excel(expr, cells)
                env[name] = ref(cc, r0)
                names_, fn_ = eq_funcs[e_i]
                try:
                    num[name] = float(fn_(*[num[x] for x in names_]))
                except (ValueError, ZeroDivisionError, OverflowError):
                    num[name] = np.nan
                final = cols["last"].get(name) == e_i and (name == "p" or name in rule.slots)
                if not final and np.isfinite(num[name]):
                    out.checks.append(Check(ref(cc, r0), f"optimizer {name}", step, num[name]))
                if cols["last"].get(name) == e_i:
                    if name == "p":
                        out.checks.append(Check(ref(cc, r0), "after", step, float(vals["after"][s, idx])))
                        prev_after[label] = ref(cc, r0)
                        out.after_cells[label].append(ref(cc, r0))
                    elif name in rule.slots:
                        prev_slot[(label, name)] = ref(cc, r0)
                        rec_slot = _trace_slot(name, vals["slots"])
                        if rec_slot is not None and np.isfinite(vals["slots"][rec_slot][s, idx]):
                            out.checks.append(Check(ref(cc, r0), f"state {rec_slot}", step,
                                                    float(vals["slots"][rec_slot][s, idx])))
            n_formulas += 2 + len(eqs)
        rows.extend(block)
        n_formulas += 1
    out.n_formulas = n_formulas
    return out
