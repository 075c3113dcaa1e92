"""Excel export: values round-trip, sheet splitting, and the live formula sheet.

The live sheet is recalculated from scratch by LibreOffice headless (a profile that
forces recalculation on load; openpyxl writes no cached values), and every formula cell
that corresponds to a recorded number must equal the trace within 1e-6 relative.
"""
from __future__ import annotations

import zipfile

import numpy as np
import openpyxl
import pandas as pd
import pytest

import reports
from reports import _excel_cells
from reports.excel import write_workbook
from tracer.display import compact_rows
from tracer.errors import TraceFileError, TraceInputError

from _lo import cell, convert, profile, sheet_csv
from _trace_factories import mlp_trace, s0_trace, s2_trace

ITER_SHEET = 2  # about=1, iterations=2


@pytest.fixture(scope="module")
def lo(tmp_path_factory):
    return profile(tmp_path_factory.mktemp("lo_profile"))


def _assert_checks(info, grid, rtol=1e-6):
    assert info.checks, "the live sheet registered no formula cells to check"
    bad = []
    for ch in info.checks:
        got = cell(grid, ch.cell)
        if not isinstance(got, float) or abs(got - ch.expected) > rtol * abs(ch.expected) + 1e-12:
            bad.append((ch, got))
    assert not bad, f"{len(bad)} of {len(info.checks)} formula cells disagree, first: {bad[:3]}"


def _every_formula_cell_is_checked(path, info, sheet="iterations"):
    """The checks cover every formula cell of the sheet: nothing computed goes unverified."""
    wb = openpyxl.load_workbook(path, read_only=True)
    formulas = {c.coordinate for row in wb[sheet].iter_rows() for c in row
                if isinstance(c.value, str) and c.value.startswith("=")}
    checked = {c.cell.replace("$", "") for c in info.checks}
    assert formulas and formulas <= checked, f"unchecked formula cells: {sorted(formulas - checked)[:5]}"
    return len(formulas)


def _formula_cells_have_no_cached_values(path, sheet="iterations", sample=200):
    wb = openpyxl.load_workbook(path, read_only=True)
    wbv = openpyxl.load_workbook(path, read_only=True, data_only=True)
    n = 0
    for frow, vrow in zip(wb[sheet].iter_rows(max_row=sample), wbv[sheet].iter_rows(max_row=sample)):
        for f, v in zip(frow, vrow):
            if isinstance(f.value, str) and f.value.startswith("="):
                assert v.value is None, f"{f.coordinate} has a cached value {v.value!r}"
                n += 1
    assert n > 0


def test_s2_live_sheet_recalculated_by_libreoffice_matches_trace(tmp_path, lo):
    trace = s2_trace()
    path = tmp_path / "s2.xlsx"
    info = write_workbook(trace, path, formulas=True)
    assert info.formulas and info.reason is None
    _formula_cells_have_no_cached_values(path)
    # per batch row: x, y, x1@W, z1 (the prediction), the loss term, dL/dy_pred (6 x 48);
    # per iteration: lr, batch loss, dL/d(loss/row_total) = 1/n, and per parameter its gradient
    # and 4 RMSprop assignments (13 x 12); "before" of iterations 2..12 (22)
    assert _every_formula_cell_is_checked(path, info) == 6 * 48 + 13 * 12 + 22
    grid = sheet_csv(path, ITER_SHEET, tmp_path / "csv", lo)
    _assert_checks(info, grid)
    # coverage: every recorded number of every iteration has its formula cell
    kinds = pd.Series([c.quantity for c in info.checks]).value_counts()
    assert kinds["prediction"] == 12 * 4 and kinds["loss"] == 12
    assert kinds["grad"] == 24 and kinds["after"] == 24 and kinds["state velocity"] == 24
    assert kinds["before"] == 22  # iterations 2..12: the previous iteration's "after" cells
    # golden numbers of S2 (SCENARIOS.md): RMSprop's first step is lr/sqrt(1 - rho) in size
    after = [c for c in info.checks if c.quantity == "after" and c.step == 1]
    got = sorted(cell(grid, c.cell) for c in after)
    assert got == pytest.approx([0.15811388, 0.65811388], abs=1e-7)


def test_s2_learning_rate_cell_is_live(tmp_path, lo):
    """Editing the lr cell by hand replays training: every later iteration follows lr=0.01."""
    path = tmp_path / "s2.xlsx"
    info = write_workbook(s2_trace(), path, formulas=True)
    wb = openpyxl.load_workbook(path)
    ws = wb["iterations"]
    assert ws[info.lr_cell.replace("$", "")].value == pytest.approx(0.05)
    ws[info.lr_cell.replace("$", "")].value = 0.01
    edited = tmp_path / "edited.xlsx"
    wb.save(edited)
    grid = sheet_csv(edited, ITER_SHEET, tmp_path / "csv", lo)
    # the same layout written for an lr=0.01 run gives the expected value of every cell
    ref_info = write_workbook(s2_trace(lr=0.01), tmp_path / "ref.xlsx", formulas=True)
    assert [c.cell for c in ref_info.checks] == [c.cell for c in info.checks]
    _assert_checks(ref_info, grid)
    old = {c.cell: c.expected for c in info.checks}
    changed = [c for c in ref_info.checks if c.quantity == "after"
               and abs(cell(grid, c.cell) - old[c.cell]) > 1e-6 * abs(old[c.cell])]
    assert {c.step for c in changed} == set(range(1, 13))


@pytest.mark.slow
def test_s0_live_sheet_recalculated_by_libreoffice_matches_trace(tmp_path, lo):
    trace = s0_trace()
    path = tmp_path / "s0.xlsx"
    info = write_workbook(trace, path, formulas=True)
    assert info.formulas
    grid = sheet_csv(path, ITER_SHEET, tmp_path / "csv", lo)
    _assert_checks(info, grid)
    kinds = pd.Series([c.quantity for c in info.checks]).value_counts()
    assert kinds["prediction"] == 100 * 1000 and kinds["loss"] == 100
    last = [c for c in info.checks if c.quantity == "after" and c.step == 100]
    got = sorted(cell(grid, c.cell) for c in last)
    assert got == pytest.approx([1.73587336, 13.09844702], abs=1e-8)   # golden final biases, weights
    loss_cells = [c for c in info.checks if c.quantity == "loss"]
    assert cell(grid, loss_cells[0].cell) == pytest.approx(2937.686334634683, rel=1e-12)
    assert cell(grid, loss_cells[-1].cell) == pytest.approx(0.03627764373777711, rel=1e-9)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_small_dense_stack_with_adam_is_live_too(tmp_path, lo, activation):
    """1 -> 3 (tanh/relu) -> 1 with Keras Adam: hidden activations, backprop and bias correction as formulas."""
    trace = mlp_trace(activation=activation)
    path = tmp_path / "mlp.xlsx"
    info = write_workbook(trace, path, formulas=True)
    assert info.formulas, info.reason
    _every_formula_cell_is_checked(path, info)
    grid = sheet_csv(path, ITER_SHEET, tmp_path / "csv", lo)
    _assert_checks(info, grid)
    kinds = pd.Series([c.quantity for c in info.checks]).value_counts()
    assert kinds["grad"] == 6 * 10 and kinds["state momentum"] == 6 * 10 and kinds["state velocity"] == 60
    header = grid[info_header_row(grid) - 1]
    # columns are the program's variables: z1 = x1@W + b, a1 = act(z1), and their gradients
    assert {"z1[0]", "a1[2]", "dL/da1[0]", "dL/dz1[2]"} <= set(header)


def info_header_row(grid):
    return next(i for i, row in enumerate(grid, start=1) if row[:3] == ["epoch", "batch", "iteration"])


def test_values_workbook_reads_back_equal_in_libreoffice(tmp_path, lo):
    trace = s2_trace()
    path = reports.to_excel(trace, tmp_path / "v.xlsx")
    convert(path, tmp_path / "out", lo)
    wb = openpyxl.load_workbook(tmp_path / "out" / "v.xlsx", data_only=True)
    assert wb.sheetnames[:3] == ["about", "iterations", "charts"]
    for name, frame in trace.tables().items():
        rows = list(wb[name].values)
        assert list(rows[0]) == list(frame.columns)
        back = pd.DataFrame(rows[1:], columns=rows[0])
        for col in frame.columns:
            if frame[col].dtype.kind == "f":
                np.testing.assert_allclose(back[col].astype(float), frame[col], rtol=1e-12)
            else:
                assert back[col].astype(str).tolist() == frame[col].astype(str).tolist()
    it = list(wb["iterations"].values)
    head = it[0]
    assert head[:7] == ("epoch", "batch", "iteration", "batch size", "rows used (0-based data rows)", "lr", "loss")
    assert "kernel before" in head and "dense/kernel before" not in head        # short parameter names
    assert len(it) == 13
    samples = trace.samples
    for r, row in enumerate(it[1:], start=1):
        assert row[2] == r
        assert row[4] == compact_rows(samples[samples.step == r]["sample"])     # '2, 0, 9, 10 (4 rows)', '0-3 ...'
        assert row[6] == pytest.approx(trace.steps.loss.iloc[r - 1], rel=1e-12)
        b = head.index("kernel before")
        assert row[b] == pytest.approx(trace.param_values("dense/kernel", "before")[r - 1, 0, 0], rel=1e-12)
        assert row[b + 1] == pytest.approx(trace.param_values("dense/kernel", "after")[r - 1, 0, 0], rel=1e-12)


def test_tables_split_past_the_row_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(_excel_cells, "EXCEL_MAX_ROWS", 11)  # 10 data rows + header per sheet
    trace = s2_trace()
    info = write_workbook(trace, tmp_path / "split.xlsx")
    wb = openpyxl.load_workbook(tmp_path / "split.xlsx", read_only=True)
    params = [s for s in wb.sheetnames if s.startswith("params")]
    assert params == ["params_1", "params_2", "params_3"]          # 24 rows -> 10 + 10 + 4
    frames = []
    for s in params:
        rows = list(wb[s].values)
        assert len(rows) <= 11
        frames.append(pd.DataFrame(rows[1:], columns=rows[0]))
    back = pd.concat(frames, ignore_index=True)
    # openpyxl writes 16 significant digits: equal to the last bit or two
    np.testing.assert_allclose(back["after"].to_numpy(float), trace.params["after"].to_numpy(), rtol=1e-15)
    assert [s for s in wb.sheetnames if s.startswith("iterations")] == ["iterations_1", "iterations_2"]
    assert "data_1" in info.sheets and "data_2" in info.sheets


def test_large_model_falls_back_to_values_and_says_so(tmp_path):
    trace = s2_trace()
    layer = {"type": "dense", "weight": "dense/kernel", "bias": "dense/bias", "activation": "relu", "units": 1}
    trace.meta["model"] = {"kind": "dense_stack", "layers": [layer] * 4}
    info = write_workbook(trace, tmp_path / "fb.xlsx", formulas=True)
    assert not info.formulas and "4 layers" in info.reason
    wb = openpyxl.load_workbook(tmp_path / "fb.xlsx", read_only=True)
    first = next(wb["iterations"].values)[0]
    assert first.startswith("Formulas were not written") and "4 layers" in first
    # too many parameter elements: 65 > 64
    from reports import _excel_formulas
    big = mlp_trace(epochs=1, hidden=22)     # 22 + 22 + 22 + 1 = 67 elements
    info = write_workbook(big, tmp_path / "big.xlsx", formulas=True)
    assert not info.formulas and "67 parameter elements" in info.reason
    assert _excel_formulas.FORMULA_MAX_PARAM_ELEMENTS == 64


def test_charts_are_native_excel_charts(tmp_path):
    write_workbook(s2_trace(), tmp_path / "c.xlsx", formulas=True)
    with zipfile.ZipFile(tmp_path / "c.xlsx") as z:
        charts = [n for n in z.namelist() if n.startswith("xl/charts/chart")]
        assert len(charts) == 3   # loss, kernel path, bias path
        xml = " ".join(z.read(n).decode() for n in charts)
    assert "per_iteration" in xml and "Batch loss per iteration" in xml and "Path of dense/kernel" in xml


def test_unwritable_paths_raise_trace_file_error(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(TraceFileError, match="cannot write the workbook"):
        reports.to_excel(s2_trace(), blocker / "out.xlsx")
    with pytest.raises(TraceFileError, match="cannot write CSV"):
        reports.to_csv(s2_trace(), blocker / "csvdir")
    with pytest.raises(TraceInputError, match="xlsx"):
        reports.to_excel(s2_trace(), tmp_path / "out.xls")


def test_csv_round_trip_is_exact(tmp_path):
    trace = s0_trace(iterations=5)
    paths = reports.to_csv(trace, tmp_path / "csv")
    assert [p.name for p in paths] == ["data.csv", "steps.csv", "samples.csv", "params.csv", "epochs.csv"]
    for p, (name, frame) in zip(paths, trace.tables().items()):
        back = pd.read_csv(p)
        for col in frame.columns:
            if frame[col].dtype.kind == "f":
                np.testing.assert_array_equal(back[col].to_numpy(float), frame[col].to_numpy())


@pytest.mark.keras
@pytest.mark.slow
def test_real_keras_s2_workbook_recalculated_matches_the_float32_run(tmp_path, lo):
    """S2 recorded by the Keras hook (float32): the float64 sheet agrees within 1e-6 relative."""
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    from hooks.keras import TraceCallback

    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(
        units=1, kernel_initializer=keras.initializers.Constant(0.5))])
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.05), loss="mean_squared_error",
                  metrics=[keras.metrics.RootMeanSquaredError()])
    cb = TraceCallback()
    x = np.arange(1, 13, dtype=np.float64)
    y = np.array([5.0, 8.8, 9.6, 14.2, 18.8, 19.5, 21.4, 26.8, 28.9, 32.0, 33.8, 38.2])
    model.fit(x, y, epochs=4, batch_size=4, shuffle=True, callbacks=[cb], verbose=0)
    trace = cb.trace
    assert trace.n_steps == 12
    path = tmp_path / "s2k.xlsx"
    info = write_workbook(trace, path, formulas=True)
    assert info.formulas, info.reason
    _every_formula_cell_is_checked(path, info)
    grid = sheet_csv(path, ITER_SHEET, tmp_path / "csv", lo)
    _assert_checks(info, grid, rtol=1e-6)
    assert "float32" in " ".join(str(c) for c in grid[3] + grid[2])


# ------------------------------------------------------------------ programs (meta["program"])
@pytest.mark.torch
@pytest.mark.parametrize("factory,expect", [
    ("polynomial_trace", {"x2", "x3", "bx", "s2", "prediction (y_pred)", "dL/dy_pred", "a: square_avg"}),
    ("mlp_trace", {"h[0]", "prediction (prob)", "dL/dz2", "dL/dh[2]", "dL/dz1[1]", "0.weight[2,1]: exp_avg_sq"}),
    ("logistic_trace", {"prediction (prob)", "loss/term", "dL/dprob", "dL/dz", "0.bias: momentum_buffer"}),
    ("softmax_trace", {"logsumexp(logits)", "loss/log_softmax[2]", "loss/onehot[1]", "dL/dlogits[0]"}),
])
def test_program_models_are_live_and_libreoffice_reproduces_torch(tmp_path, lo, factory, expect):
    """Scalar-parameter polynomial (RMSprop), a tanh/sigmoid MLP (Adam), sigmoid + BCELoss (SGD with
    momentum), softmax cross-entropy on class numbers: every formula cell recalculated by
    LibreOffice equals the engine's value, and the batch losses and updated parameters equal
    what torch computed."""
    import _program_traces

    trace = getattr(_program_traces, factory)()
    path = tmp_path / f"{factory}.xlsx"
    info = write_workbook(trace, path, formulas=True)
    assert info.formulas, info.reason
    _every_formula_cell_is_checked(path, info)
    grid = sheet_csv(path, ITER_SHEET, tmp_path / "csv", lo)
    _assert_checks(info, grid, rtol=1e-9)
    header = grid[info_header_row(grid) - 1]
    assert expect <= set(header), sorted(expect - set(header))
    by = {}
    for c in info.checks:
        by.setdefault(c.quantity, []).append(c)
    losses = [cell(grid, c.cell) for c in by["loss"]]
    np.testing.assert_allclose(losses, trace.steps["loss"].to_numpy(), rtol=1e-9)
    after = trace.params.set_index(["step", "param", "index"])["after"]
    from reports._excel_formulas import element_labels
    elements = [(p, i) for p, (_, labs) in element_labels(trace).items() for i in range(len(labs))]
    got = [cell(grid, c.cell) for c in by["after"]]
    want = [after[(c.step, *elements[k % len(elements)])] for k, c in enumerate(by["after"])]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.torch
def test_program_lr_cell_is_live(tmp_path, lo):
    """The polynomial: editing the lr cell replays training with the new rate."""
    import _program_traces

    path = tmp_path / "poly.xlsx"
    info = write_workbook(_program_traces.polynomial_trace(lr=1e-2), path, formulas=True)
    wb = openpyxl.load_workbook(path)
    wb["iterations"][info.lr_cell.replace("$", "")].value = 3e-2
    wb.save(tmp_path / "edited.xlsx")
    grid = sheet_csv(tmp_path / "edited.xlsx", ITER_SHEET, tmp_path / "csv", lo)
    ref_info = write_workbook(_program_traces.polynomial_trace(lr=3e-2), tmp_path / "ref.xlsx", formulas=True)
    assert [c.cell for c in ref_info.checks] == [c.cell for c in info.checks]
    _assert_checks(ref_info, grid, rtol=1e-9)


def _dense_meta(layers, loss, optimizer=None):
    return {"framework": "keras", "model": {"kind": "dense_stack", "layers": layers}, "loss": loss,
            "optimizer": optimizer or {"name": "rmsprop", "convention": "keras", "lr": 0.05}}


def _layer(w, b, act="linear"):
    return {"type": "dense", "weight": w, "bias": b, "transpose": False, "activation": act}


_X = np.linspace(-2, 2, 12).reshape(-1, 1)
_LEGACY = {
    "mse": ([_layer("w", "b")], {"name": "mse", "reduction": "sum_over_batch_size"}, None),
    "sum of squares / 2 / n": ([_layer("w", "b")], {"name": "squared_error", "divide_by": [2, "n"]}, None),
    "mae": ([_layer("w", "b")], {"name": "mae", "reduction": "sum_over_batch_size"}, None),
    "huber": ([_layer("w", "b")], {"name": "huber", "delta": 1.5, "reduction": "sum_over_batch_size"}, None),
    "bce keras": ([_layer("w", "b", "sigmoid")], {"name": "bce", "reduction": "sum_over_batch_size"}, None),
    "bce torch": ([_layer("w", "b", "sigmoid")], {"name": "bce", "convention": "torch", "reduction": "mean"}, None),
    "bce logits": ([_layer("w", "b")], {"name": "bce_logits", "reduction": "sum_over_batch_size"}, None),
    "3 layers": ([_layer("w", "b", "relu"), _layer("w1", "b1", "tanh"), _layer("w2", "b2", "sigmoid")],
                 {"name": "mse", "reduction": "sum_over_batch_size"},
                 {"name": "adam", "convention": "keras", "lr": 0.05}),
}


@pytest.mark.parametrize("case", list(_LEGACY))
def test_declared_dense_stacks_and_losses_stay_live(tmp_path, lo, case):
    """What the 0.1.0 sheet wrote (dense stacks up to 3 layers, the elementwise losses) is still
    written, now from the program the checker builds for them; LibreOffice reproduces the engine."""
    from _program_traces import engine_trace

    layers, loss, opt = _LEGACY[case]
    rng = np.random.default_rng(7)
    shapes = {"w": (1, 2), "b": (2,), "w1": (2, 2), "b1": (2,), "w2": (2, 1), "b2": (1,)}
    if len(layers) == 1:
        shapes.update({"w": (1, 1), "b": (1,)})
    params = {n: rng.normal(0, 0.7, shapes[n]) for lay in layers for n in (lay["weight"], lay["bias"])}
    if case == "3 layers":
        params["b"] = np.abs(params["b"]) + 0.5        # a ReLU alive on some rows (else: dead-ReLU finding)
    y = (_X > 0.3).astype(float) if "bce" in case or case == "3 layers" else 1.5 * _X - 0.5 + np.sin(3 * _X)
    trace = engine_trace(_dense_meta(layers, loss, opt), _X, y, params)
    assert reports_check(trace) == "passed"
    path = tmp_path / "legacy.xlsx"
    info = write_workbook(trace, path, formulas=True)
    assert info.formulas, info.reason
    _every_formula_cell_is_checked(path, info)
    _assert_checks(info, sheet_csv(path, ITER_SHEET, tmp_path / "csv", lo), rtol=1e-9)


def reports_check(trace):
    import tracer
    return tracer.check(trace).verdict


_CHAIN = [("gelu", {}), ("gelu", {"approximate": "tanh"}), ("silu", {}), ("softplus", {"beta": 2.0, "threshold": 20.0}),
          ("elu", {"alpha": 0.7}), ("leaky_relu", {"alpha": 0.1}), ("selu", {}), ("tanh", {}), ("sin", {}),
          ("clamp", {"min": -0.6, "max": 0.9}), ("sigmoid", {}), ("relu", {}), ("exp", {}), ("log", {}),
          ("sqrt", {}), ("abs", {}), ("square", {})]


def test_every_elementwise_activation_is_printed_from_its_expression(tmp_path, lo):
    """A chain of registry ops (GELU exact and tanh, SiLU, softplus, ELU, leaky ReLU, SELU, tanh, sin,
    clamp, sigmoid, ReLU, exp, log, sqrt, abs, square) between two dense layers: each op's
    formula and derivative are printed from its sympy expression; LibreOffice reproduces the
    engine's values and gradients in every cell."""
    from _program_traces import engine_trace

    nodes = [{"name": "z", "op": "linear", "args": ["x", "W1", "b1"]}]
    prev = "z"
    for i, (op, attrs) in enumerate(_CHAIN):
        nodes.append({"name": f"h{i}_{op}", "op": op, "args": [prev], "attrs": attrs})
        prev = f"h{i}_{op}"
    nodes += [{"name": "out", "op": "linear", "args": [prev, "W2", "b2"]},
              {"name": "loss", "op": "mse_loss", "args": ["out", "y"]}]
    program = {"inputs": [{"name": "x", "source": "inputs"}, {"name": "y", "source": "targets"}],
               "params": ["W1", "b1", "W2", "b2"], "nodes": nodes,
               "outputs": {"prediction": "out", "loss": "loss", "target": "y"}}
    meta = {"framework": "torch", "program": program, "optimizer": {"name": "sgd", "convention": "torch", "lr": 0.1}}
    rng = np.random.default_rng(3)
    params = {"W1": rng.normal(0, 0.8, (2, 1)), "b1": np.array([0.2, -0.3]), "W2": rng.normal(0, 0.8, (1, 2)),
              "b2": np.zeros(1)}
    trace = engine_trace(meta, _X, np.cos(_X), params)
    path = tmp_path / "chain.xlsx"
    info = write_workbook(trace, path, formulas=True)
    assert info.formulas, info.reason
    # per_iteration's all-rows columns: a 17-op chain would print an exponentially long formula
    assert any("too long" in note for note in info.notes), info.notes
    _every_formula_cell_is_checked(path, info)
    grid = sheet_csv(path, ITER_SHEET, tmp_path / "csv", lo)
    _assert_checks(info, grid, rtol=1e-9)
    header = grid[info_header_row(grid) - 1]
    assert {f"h{i}_{op}[1]" for i, (op, _) in enumerate(_CHAIN)} <= set(header)
    assert {f"dL/dh{i}_{op}[0]" for i, (op, _) in enumerate(_CHAIN)} <= set(header)


@pytest.mark.parametrize("case", ["(N,1) against (N,)", "gather by target"])
def test_programs_the_sheet_cannot_lay_out_fall_back_with_the_reason(tmp_path, case):
    """The engine checks them; the sheet refuses them by name (never a silent value sheet)."""
    from _program_traces import engine_trace

    if case == "(N,1) against (N,)":
        nodes = [{"name": "pred", "op": "linear", "args": ["x", "W", "b"]},
                 {"name": "loss", "op": "mse_loss", "args": ["pred", "y"], "where": "train.py:12"}]
        y_input = {"name": "y", "source": "targets", "shape": []}
        y, params = np.sin(_X), {"W": np.array([[0.5]]), "b": np.array([0.1])}
        reason = "the batch rows would be broadcast against each other"
    else:
        nodes = [{"name": "logits", "op": "linear", "args": ["x", "W", "b"]},
                 {"name": "logp", "op": "log_softmax", "args": ["logits"], "attrs": {"dim": 1}},
                 {"name": "idx", "op": "unsqueeze", "args": ["y"], "attrs": {"dim": 1}},
                 {"name": "picked", "op": "gather", "args": ["logp", "idx"], "attrs": {"dim": 1}, "where": "nll.py:7"},
                 {"name": "nll", "op": "neg", "args": ["picked"]}, {"name": "loss", "op": "mean", "args": ["nll"]}]
        y_input = {"name": "y", "source": "targets", "shape": [], "dtype": "int"}
        y = (np.arange(12) % 3).reshape(-1, 1).astype(float)
        params = {"W": np.array([[0.5], [-0.2], [0.1]]), "b": np.zeros(3)}
        reason = "positions that depend on the data"
    program = {"inputs": [{"name": "x", "source": "inputs"}, y_input], "params": ["W", "b"], "nodes": nodes,
               "outputs": {"prediction": nodes[0]["name"], "loss": "loss", "target": "y"}}
    meta = {"framework": "torch", "program": program, "optimizer": {"name": "sgd", "convention": "torch", "lr": 0.1}}
    trace = engine_trace(meta, _X, y, params)
    import tracer
    report = tracer.check(trace)
    if "broadcast" in reason:        # the checker names the bug; the sheet still says why it is not live
        assert [f.kind for f in report.findings] == ["loss_broadcast"] and report.table["passed"].all()
    else:
        assert report.verdict == "passed", report.summary()
    info = write_workbook(trace, tmp_path / "fb.xlsx", formulas=True)
    assert not info.formulas and reason in info.reason, info.reason
    first = next(openpyxl.load_workbook(tmp_path / "fb.xlsx", read_only=True)["iterations"].values)[0]
    assert first.startswith("Formulas were not written") and reason in first


SUMMARY_SHEET = 3  # about=1, iterations=2, per_iteration=3


def test_running_mean_and_all_rows_columns_are_live_and_follow_an_lr_edit(tmp_path, lo):
    """per_iteration: the running mean Keras logs and the updated model on all 12 rows, as
    formulas; S2's golden numbers at iteration 1, and an lr edit on the iterations sheet
    moves them to the values of an lr=0.01 run."""
    from _lo import set_number
    path = tmp_path / "s2.xlsx"
    info = write_workbook(s2_trace(), path, formulas=True)
    assert info.summary_checks and not info.notes
    grid = sheet_csv(path, SUMMARY_SHEET, tmp_path / "csv", lo)
    head = grid[0]
    assert "running mean loss (what Keras logs)" in head and "loss on all rows, weights after the update" in head
    _assert_checks(type("I", (), {"checks": info.summary_checks})(), grid)
    # S2's golden numbers (epochs=1, batch_size=12): Keras's 20.0745 and the learner's 18.7706, side by side
    one = write_workbook(s2_trace(epochs=1, batch_size=12, shuffle=False), tmp_path / "one.xlsx", formulas=True)
    golden = {c.quantity: c.expected for c in one.summary_checks if c.step == 1}
    assert golden["running loss"] == pytest.approx(402.9850, abs=1e-3)
    assert golden["all rows loss after"] == pytest.approx(352.3351, abs=1e-3)
    assert golden["running root_mean_squared_error"] == pytest.approx(20.0745, abs=1e-4)
    assert golden["root_mean_squared_error all rows after"] == pytest.approx(18.7706, abs=1e-4)
    edited = tmp_path / "edited.xlsx"
    set_number(path, edited, "iterations", info.lr_cell, 0.01)
    grid = sheet_csv(edited, SUMMARY_SHEET, tmp_path / "csv2", lo)
    ref = write_workbook(s2_trace(lr=0.01), tmp_path / "ref.xlsx", formulas=True)
    assert [c.cell for c in ref.summary_checks] == [c.cell for c in info.summary_checks]
    _assert_checks(type("I", (), {"checks": ref.summary_checks})(), grid)


def test_sheets_are_readable_and_print_landscape_one_page_wide(tmp_path):
    path = tmp_path / "s2.xlsx"
    write_workbook(s2_trace(), path, formulas=True)
    wb = openpyxl.load_workbook(path)
    for name in ("iterations", "per_iteration", "steps", "samples"):
        ws = wb[name]
        assert ws.page_setup.fitToWidth == 1 and ws.page_setup.fitToHeight == 0, name
        assert ws.page_setup.orientation == ("portrait" if name == "samples" else "landscape"), name   # 3 columns
        assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.freeze_panes and ws.print_title_rows, name
    ws = wb["per_iteration"]
    head = [c.value for c in ws[1]]
    assert all(c.alignment.wrap_text for c in ws[1])
    assert any("kernel" in str(h) and "dense/kernel" not in str(h) for h in head)      # named, short
    styles = [ws.cell(row=r, column=1).border.bottom.style for r in range(2, 14)]
    assert styles[3 - 1] == styles[6 - 1] == "medium" and styles[0] == "thin"           # epochs end at 3, 6, ...
    rows_used = [ws.cell(row=r, column=5).value for r in range(2, 14)]
    assert all(isinstance(v, str) and "(4 rows)" in v for v in rows_used), rows_used[:3]


def test_long_runs_print_first_and_last_rows(tmp_path):
    """S0's live sheet has 100,000 rows: it prints the settings and the first and last
    iteration's first rows, and says so; the values sheet of a long run likewise."""
    path = tmp_path / "s0.xlsx"
    write_workbook(s0_trace(iterations=3), path, formulas=True)
    wb = openpyxl.load_workbook(path)
    ws = wb["iterations"]
    area = str(ws.print_area)
    assert area.count("!") == 2 or area.count(":") == 2, area
    assert "the first and the last" in ws.oddFooter.left.text
    assert "the first and the last" in wb["samples"].oddFooter.left.text and "3,015" in ws.oddFooter.left.text
