"""The check table built in one pass from blocks of every kind: the values of each column."""
import math

import numpy as np
import pandas as pd

from tracer.checker.report import COLUMNS, TableBuilder


def _table():
    b = TableBuilder()
    b.add(step=[3, 1], quantity="grad", param="W", index=[4, 0], expected=[2.0, 1.0], actual=[2.0 + 2e-6, 1.5],
          rtol=1e-5, atol=0.0)
    b.add_cannot_check(step=[2], quantity="prediction")
    b.add(step=2, quantity="loss", expected=np.nan, actual=1.0, rtol=1e-5, atol=0.0)
    b.add(step=[1, 2], quantity="prediction", sample=[7, 9], expected=[0.0, 4.0], actual=[1e-7, 4.0],
          scale=[1e-1, 0.0], rtol=1e-5, atol=0.0)
    b.add_rows([{"step": 1, "quantity": "logged_loss", "expected": 10.0, "actual": 10.5, "rtol": 0.1},
                {"step": 3, "quantity": "logged_mae", "param": None, "sample": None, "expected": 0.0,
                 "actual": np.inf, "scale": 5.0}], rtol=1e-5, atol=1e-6)
    return b.build()


def test_each_row_its_values_status_and_step_order():
    t = _table()
    assert list(t.columns) == COLUMNS and len(t) == 8
    assert t["step"].tolist() == [1, 1, 1, 2, 2, 2, 3, 3]        # stable: the order of adding within a step
    assert t["quantity"].tolist() == ["grad", "prediction", "logged_loss", "prediction", "loss", "prediction",
                                      "grad", "logged_mae"]
    rows = {(r.step, r.quantity): r for r in t.itertuples()}
    grad1 = rows[(1, "grad")]
    assert grad1.status == "failed" and not grad1.passed and grad1.factor == 1.5 and grad1.index == 0
    assert math.isclose(grad1.rel_err, 0.5 / 1.5)
    assert rows[(3, "grad")].status == "passed" and rows[(3, "grad")].index == 4
    cc = t[(t["step"] == 2) & (t["status"] == "cannot check")]
    assert len(cc) == 1 and cc["passed"].all() and cc["rel_err"].isna().all() and cc["abs_err"].isna().all()
    loss = rows[(2, "loss")]
    assert loss.status == "non-finite" and not loss.passed and np.isnan(loss.factor)
    pred = t[t["quantity"] == "prediction"].dropna(subset=["expected"])
    # step 1: |0 - 1e-7| within 1e-5 of the scale 0.1; step 2 exact
    assert pred["passed"].tolist() == [True, True] and pred["sample"].tolist() == [7, 9]
    assert pred["rel_err"].tolist() == [1e-7 / 1e-1, 0.0]
    logged = rows[(1, "logged_loss")]
    assert logged.passed and math.isclose(logged.rel_err, 0.5 / 10.5)       # its own rtol 0.1
    assert rows[(3, "logged_mae")].status == "non-finite"


def test_the_nullable_integer_columns_and_dtypes():
    t = _table()
    assert str(t["sample"].dtype) == "Int64" and str(t["index"].dtype) == "Int64"
    assert t["sample"].isna().sum() == 6 and t["index"].isna().sum() == 6
    assert t["step"].dtype == np.int64 and t["passed"].dtype == bool
    assert isinstance(t.index, pd.RangeIndex)


def test_no_rows_an_empty_table():
    t = TableBuilder().build()
    assert list(t.columns) == COLUMNS and len(t) == 0 and t["passed"].dtype == bool
