"""Spreadsheet exports keep formula-like names as text (OWASP CSV injection), and plots
draw mathtext-like names literally.

Every payload of ``_hostile.FORMULA`` (``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``, ``+``,
``-``, ``@``, tab, CR) is put in every name field. LibreOffice recalculates the files
from scratch and must leave each payload as text: no formula cell may hold one. Each
test first shows the attack is real (the same text written without the defence becomes
a formula in LibreOffice), and the clean twin still round-trips.
"""
from __future__ import annotations

import csv

import numpy as np
import openpyxl
import pandas as pd
import pytest

import reports
from reports.excel import write_workbook

from _hostile import FORMULA, MATHTEXT, clean_trace, hostile_trace
from _lo import convert, profile

NEEDLES = ("HYPERLINK", "cmd|", "SUM(1,2)", "SUM(1;2)", "1+1", "2+3")


@pytest.fixture(scope="module")
def lo(tmp_path_factory):
    return profile(tmp_path_factory.mktemp("lo_profile"))


def _cells(path, data_only=False):
    wb = openpyxl.load_workbook(path, data_only=data_only)
    return [(ws.title, c) for ws in wb.worksheets for row in ws.iter_rows() for c in row]


def _payload_formulas(path):
    """Formula cells that hold a payload (none may exist)."""
    return [(t, c.coordinate, c.value) for t, c in _cells(path)
            if c.data_type == "f" and any(n in str(c.value) for n in NEEDLES)]


def _texts(path):
    return {str(c.value).replace("\r", "\n") for _, c in _cells(path, data_only=True) if isinstance(c.value, str)}


def test_the_attack_is_real_without_the_defence(tmp_path, lo):
    from openpyxl import Workbook
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("raw")
    ws.append([FORMULA[0], FORMULA[1]])
    wb.save(tmp_path / "raw.xlsx")
    convert(tmp_path / "raw.xlsx", tmp_path / "out", lo)
    assert len(_payload_formulas(tmp_path / "out" / "raw.xlsx")) == 2


@pytest.mark.parametrize("formulas", [False, True], ids=["values", "live-formulas"])
def test_workbooks_keep_formula_names_as_text_after_libreoffice_recalculation(tmp_path, lo, formulas):
    trace = hostile_trace(FORMULA, extras=not formulas)
    info = write_workbook(trace, tmp_path / "attack.xlsx", formulas=formulas)
    assert info.formulas == formulas, info.reason
    assert _payload_formulas(info.path) == []
    for _, c in _cells(info.path):       # as written: typed strings with Excel's quote prefix
        if isinstance(c.value, str) and c.value.startswith(("=", "+", "-", "@", "\t")) and \
                any(n in c.value for n in NEEDLES):
            assert c.data_type == "s" and c.quotePrefix, (c.coordinate, c.value)
    convert(info.path, tmp_path / "out", lo)
    back = tmp_path / "out" / "attack.xlsx"
    assert _payload_formulas(back) == []
    texts = _texts(back)
    weight = FORMULA[0]
    shown = {weight, FORMULA[1]}          # the names, as text, on the data and params sheets
    assert shown <= texts, shown - texts
    if formulas:   # the sheet's own formulas still compute: the live loss equals the recorded one
        grid = openpyxl.load_workbook(back, data_only=True)["per_iteration"]
        header = [c.value for c in grid[1]]
        col = header.index("batch loss (live)")
        live = [r[col] for r in grid.iter_rows(min_row=2, values_only=True)]
        np.testing.assert_allclose(live, trace.steps["loss"], rtol=1e-9)


def test_clean_twin_workbook_is_unchanged(tmp_path):
    trace = clean_trace()
    path = reports.to_excel(trace, tmp_path / "clean.xlsx")
    wb = openpyxl.load_workbook(path)
    params = list(wb["params"].values)
    assert [r[1] for r in params[1:]] == trace.params["param"].tolist()
    assert all(c.data_type == "n" for row in wb["params"].iter_rows(min_row=2, min_col=4, max_col=4)
               for c in row)


def test_csv_cells_and_headers_get_a_quote_and_numbers_stay_numbers(tmp_path, lo):
    trace = hostile_trace(FORMULA)
    paths = dict(zip(("data", "steps", "samples", "params", "epochs"),
                     reports.to_csv(trace, tmp_path / "csv")))
    with open(paths["params"], newline="") as fh:
        rows = list(csv.reader(fh))
    names = {r[1] for r in rows[1:]}
    assert names == {"'" + n for n in dict.fromkeys(FORMULA)}
    for r in rows[1:]:
        for v in r[3:7]:                        # before, grad, after, update: plain numbers
            float(v)
    back = pd.read_csv(paths["params"])
    np.testing.assert_array_equal(back["before"].to_numpy(float), trace.params["before"].to_numpy())
    assert (back["before"] < 0).any() or (back["update"] < 0).any()   # negatives are not quoted
    with open(paths["data"], newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ["sample"] + ["'" + FORMULA[6], "'" + FORMULA[0], "'" + FORMULA[1]]
    # LibreOffice opens the CSV with every payload as text; the raw CSV would be formulas
    raw = tmp_path / "raw.csv"
    trace.params.to_csv(raw, index=False)
    convert(raw, tmp_path / "lo_raw", lo)
    assert _payload_formulas(tmp_path / "lo_raw" / "raw.xlsx")
    convert(paths["params"], tmp_path / "lo", lo)
    assert _payload_formulas(tmp_path / "lo" / "params.xlsx") == []


def test_clean_twin_csv_is_exact(tmp_path):
    trace = clean_trace()
    paths = reports.to_csv(trace, tmp_path / "csv")
    for p, (name, frame) in zip(paths, trace.tables().items()):
        back = pd.read_csv(p)
        assert list(back.columns) == list(frame.columns)
        for col in frame.columns:
            if frame[col].dtype.kind == "f":
                np.testing.assert_array_equal(back[col].to_numpy(float), frame[col].to_numpy())
            else:
                assert back[col].astype(str).tolist() == frame[col].astype(str).tolist()


def test_mathtext_names_do_not_break_the_plots(tmp_path):
    trace = hostile_trace(MATHTEXT)
    trace.meta["loss"]["name"] = MATHTEXT[0]
    paths = reports.build_report(trace, plots=tmp_path / "plots", progress=False)["plots"]
    assert {p.name for p in paths} >= {"loss.png", "params.png", "gradients.png", "params.svg"}
    svg = (tmp_path / "plots" / "params.svg").read_text()
    assert "w$\\foo{$" in svg or "w$" in svg        # drawn as text (svg.fonttype 'path' keeps ids)
    from reports import plots
    fig = plots.plot_params(trace)
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith(r"w\$\foo{\$") for t in titles)
    import matplotlib.pyplot as plt
    fig.canvas.draw()                                  # renders without a mathtext error
    plt.close(fig)
