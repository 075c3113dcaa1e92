"""Printing: Excel formulas evaluate to the same numbers as the sympy expression."""
import math
import re

import numpy as np
import pytest
import sympy as sp

from tracer.errors import TraceInputError
from tracer.math import get_loss, get_optimizer, printing

x, y, w = sp.symbols("x y w", real=True)


def eval_excel(formula, values):
    """Evaluate our Excel subset in Python (cells are names in ``values``)."""
    assert formula.startswith("=")
    f = formula[1:].replace("<>", "!=").replace("^", "**")
    f = re.sub(r"(?<![<>!=])=(?!=)", "==", f)

    def IF(c, a, b):
        return a if c else b
    env = {"SQRT": math.sqrt, "EXP": math.exp, "LN": math.log, "ABS": abs, "MAX": max, "MIN": min,
           "IF": IF, "TANH": math.tanh, "SIGN": lambda v: (v > 0) - (v < 0), "TRUE": True, "FALSE": False,
           "AND": lambda *a: all(a), "OR": lambda *a: any(a), "NOT": lambda v: not v}
    env.update(values)
    return eval(f, {"__builtins__": {}}, env)


EXPRS = [
    -x ** 2, (x - y) ** 2 / 2, sp.sqrt(x ** 2 + 1) - 3 * y, sp.exp(-sp.Abs(x)) + sp.log(1 + y ** 2),
    sp.Piecewise((x, x > 0), (0, True)) - x * y, x / (y + sp.Rational(1, 3)), sp.Max(x, y, 0) * w ** -1,
    sp.Piecewise((sp.Rational(1, 2) * x ** 2, sp.Abs(x) <= 1), (sp.Abs(x) - sp.Rational(1, 2), True)),
    -(x - 2 * y) * 0.25e-7, sp.Heaviside(x) + sp.sign(y) + sp.tanh(w), 2 ** (-x),
]


@pytest.mark.parametrize("i", range(len(EXPRS)))
def test_excel_formula_evaluates_like_sympy(i):
    e = EXPRS[i]
    cells = {x: "B2", y: "C2", w: "D2"}
    f = printing.excel(e, cells)
    for xv, yv, wv in [(1.5, -0.7, 2.0), (-2.0, 0.3, -1.0), (0.4, 2.0, 0.5)]:
        want = float(e.subs({x: xv, y: yv, w: wv}))
        got = eval_excel(f, {"B2": xv, "C2": yv, "D2": wv})
        assert got == pytest.approx(want, rel=1e-12), (f, xv, yv, wv)


def test_excel_negative_power_is_parenthesised():
    # Excel evaluates =-2^2 as 4; the printer must never emit a bare -a^b
    f = printing.excel(-x ** 2, {x: "A1"})
    assert f == "=(-((A1)^(2)))"


def test_optimizer_equations_print_everywhere():
    rule = get_optimizer({"name": "rmsprop", "convention": "keras", "lr": 0.05, "centered": True, "momentum": 0.5})
    for name, e in rule.equations():
        cells = {s: s.name for s in e.free_symbols}
        assert printing.excel(e, cells).startswith("=")
        assert printing.text(e) and printing.latex(e)
    loss = get_loss({"name": "bce"})
    assert "IF(" in printing.excel(loss.elementwise[0], {s: s.name for s in loss.elementwise[1]})


def test_missing_cell_is_a_clear_error():
    with pytest.raises(TraceInputError, match="'y'"):
        printing.excel(x + y, {x: "A1"})
    with pytest.raises(TraceInputError, match="cells"):
        printing.excel(x, ["A1"])


def test_text_and_latex():
    assert printing.text((x - y) ** 2) == "(x - y)^2"
    assert printing.latex(sp.sqrt(x)) == "\\sqrt{x}"


def _readable_to_python(text):
    """Turn the readable printer's text back into Python (for the equations without a Piecewise)."""
    t = text.replace("\u00b7", "*").replace("\u2212", "-").replace("\u00b2", "**2").replace("\u00b3", "**3")
    t = re.sub(r"\u221a([A-Za-z_][A-Za-z_0-9]*|[0-9.]+)", r"sqrt(\1)", t).replace("\u221a(", "sqrt(")
    return t.replace("^", "**")


@pytest.mark.parametrize("spec", [
    {"name": "rmsprop", "convention": "keras", "lr": 0.05, "centered": True, "momentum": 0.5},
    {"name": "rmsprop", "convention": "torch", "lr": 0.01, "momentum": 0.5, "centered": True},
    {"name": "adam", "convention": "keras", "lr": 0.001}, {"name": "adam", "convention": "torch", "lr": 0.001},
    {"name": "adamw", "convention": "torch", "lr": 0.001, "amsgrad": True},
    {"name": "adagrad", "convention": "keras", "lr": 0.1}, {"name": "sgd", "convention": "plain", "lr": 0.02},
])
def test_readable_update_rules_mean_the_same_numbers(spec):
    """``p ← p − lr·g``: the readable text evaluates to the sympy expression it prints."""
    rule = get_optimizer(spec)
    names = {n for n, _ in rule.equations()} | set(rule.slots)
    rng = np.random.default_rng(1)
    for name, e in rule.equations():
        line = printing.assignment(name, e, names)
        assert line.startswith(f"{name} \u2190 ") and "**" not in line and "*" not in line
        if e.has(sp.Piecewise):
            continue
        values = {s.name: float(rng.uniform(0.1, 0.9)) for s in e.free_symbols}
        values.update({k: 2.0 for k in values if k.startswith("square_avg")})     # centered: a real root
        want = float(e.subs({s: values[s.name] for s in e.free_symbols}))
        got = eval(_readable_to_python(line.split(" \u2190 ", 1)[1]), {"sqrt": math.sqrt, "max": max}, dict(values))
        assert got == pytest.approx(want, rel=1e-12), line


def test_readable_puts_the_assigned_variable_first_and_constants_before_variables():
    sgd = get_optimizer({"name": "sgd", "convention": "plain", "lr": 0.02})
    assert printing.assignment("p", sgd.equations()[0][1]) == "p \u2190 p \u2212 lr\u00b7g"
    rms = dict(get_optimizer({"name": "rmsprop", "convention": "keras", "lr": 0.05}).equations())
    assert printing.assignment("velocity", rms["velocity"], {"velocity"}) == \
        "velocity \u2190 rho\u00b7velocity + (1 \u2212 rho)\u00b7g\u00b2"
    assert printing.readable(rms["increment"], variables={"denominator"}) == "lr\u00b7g / \u221adenominator"
    mom = dict(get_optimizer({"name": "sgd", "convention": "torch", "lr": 0.1, "momentum": 0.9}).equations())
    assert " if t = 1, else " in printing.readable(mom["momentum_buffer"])
