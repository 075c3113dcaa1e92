"""reports.csv_export: the tables as CSV, defused against formula injection, values unchanged."""
from __future__ import annotations

import numpy as np
import pandas as pd

from reports.csv_export import defused, to_csv
from _trace_factories import s0_trace


def test_csv_tables_hold_the_trace_values(tmp_path):
    trace = s0_trace(iterations=3)
    paths = to_csv(trace, tmp_path)
    names = {p.name for p in paths}
    assert {"steps.csv", "params.csv"} <= names
    params = pd.read_csv(tmp_path / "params.csv")
    w = params[params["param"] == "weights"]
    np.testing.assert_array_equal(w["before"].to_numpy(), trace.param_values("weights", "before").ravel())
    np.testing.assert_array_equal(w["after"].to_numpy(), trace.param_values("weights", "after").ravel())


def test_defused_quotes_cells_a_spreadsheet_would_run():
    frame = pd.DataFrame({"param": ["=HYPERLINK(\"x\")", "+cmd", "-1", "@sum", "w"], "v": [1.0, 2.0, 3.0, 4.0, 5.0]})
    out = defused(frame)
    assert out["param"].tolist()[0].startswith("'=")
    assert out["param"].tolist()[1].startswith("'+")
    assert out["param"].tolist()[3].startswith("'@")
    assert out["param"].tolist()[4] == "w"
    assert out["v"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
