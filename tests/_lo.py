"""LibreOffice headless helpers for the report tests: recalculate a workbook from scratch.

The profile forces "always recalculate on load" for OOXML files, so the values read back
are LibreOffice's own results, not cached ones (openpyxl writes no cached values at all).
"""
from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

SOFFICE = shutil.which("soffice") or "/usr/bin/soffice"

_XCU = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="ODFRecalcMode" oor:op="fuse"><value>0</value></prop></item>
</oor:items>
"""


def profile(base: Path) -> Path:
    """A LibreOffice user profile that recalculates every formula on load."""
    user = base / "user"
    user.mkdir(parents=True, exist_ok=True)
    (user / "registrymodifications.xcu").write_text(_XCU)
    return base


def convert(src: Path, outdir: Path, prof: Path, to: str = "xlsx", timeout: int = 240) -> None:
    """Run ``soffice --headless --convert-to`` with the recalculating profile."""
    outdir.mkdir(parents=True, exist_ok=True)
    cmd = [SOFFICE, f"-env:UserInstallation=file://{prof}", "--headless", "--norestore",
           "--convert-to", to, "--outdir", str(outdir), str(src)]
    subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)


def sheet_csv(src: Path, sheet_number: int, outdir: Path, prof: Path) -> list[list[str]]:
    """Recalculate ``src`` and return sheet ``sheet_number`` (1-based) as CSV rows.

    Numbers are written with LibreOffice's full precision (15 significant digits).
    """
    filt = f"csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,{sheet_number}"
    convert(src, outdir, prof, to=filt)
    files = sorted(outdir.glob(src.stem + "*.csv"))
    assert files, f"LibreOffice wrote no CSV for {src}"
    with open(files[0], newline="") as fh:
        return list(csv.reader(fh))


def cell(grid: list[list[str]], coordinate: str):
    """The value at ``B7`` (``$`` allowed) in a CSV grid, as float when numeric."""
    from openpyxl.utils.cell import coordinate_from_string, column_index_from_string

    letters, row = coordinate_from_string(coordinate.replace("$", ""))
    c = column_index_from_string(letters)
    try:
        text = grid[row - 1][c - 1]
    except IndexError:
        return None
    try:
        return float(text)
    except ValueError:
        return text or None


def set_number(src: Path, dst: Path, sheet: str, coordinate: str, value: float) -> None:
    """Copy the workbook ``src`` to ``dst`` with the number in ``sheet``!``coordinate`` replaced,
    as a person editing one cell would (editing the XML: openpyxl needs a minute to load and
    save a 100,000-row sheet)."""
    import re
    import zipfile

    with zipfile.ZipFile(src) as z:
        wb = z.read("xl/workbook.xml").decode()
        rid = re.search(rf'<sheet name="{re.escape(sheet)}"[^>]*r:id="([^"]+)"', wb).group(1)
        rels = z.read("xl/_rels/workbook.xml.rels").decode()
        target = re.search(rf'Target="/?([^"]+)" Id="{rid}"', rels).group(1)
        cell = coordinate.replace("$", "")
        with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as out:
            for item in z.infolist():
                data = z.read(item.filename)
                if item.filename == target:
                    text, n = re.subn(rf'(<c r="{cell}"[^>]*><v>)[^<]*(</v>)', rf"\g<1>{value!r}\g<2>",
                                      data.decode(), count=1)
                    assert n == 1, f"no number in {sheet}!{cell}"
                    data = text.encode()
                out.writestr(item, data)
