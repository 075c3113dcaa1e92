"""reports._assets: the page's template, style and scripts are package data that ship with it."""
from __future__ import annotations

import tomllib
from pathlib import Path

from reports._assets import asset

ROOT = Path(__file__).resolve().parents[2]


def test_every_asset_file_is_declared_as_package_data_and_loads():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["reports"]
    files = sorted(p.name for p in (ROOT / "reports" / "assets").iterdir())
    assert files == ["epoch.js", "page.css", "page.html", "page.js", "program.js"]
    for name in files:
        assert any(Path(name).match(Path(pattern).name) for pattern in data), name
        assert len(asset(name)) > 100
    assert "function renderProgram" in asset("program.js") and "__JS__" in asset("page.html")
