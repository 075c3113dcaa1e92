"""docs/gallery.py: one script writes every picture; here its parts, and one scenario end to end (slow)."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _gallery():
    spec = importlib.util.spec_from_file_location("gallery", ROOT / "docs" / "gallery.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gallery_covers_the_three_scenarios():
    g = _gallery()
    traces = g.traces()
    assert list(traces) == ["s2_1x12", "s2_4x4", "s0"] == list(g.SCENARIOS)
    assert [t.n_steps for t in traces.values()] == [1, 12, 100]
    readme = (ROOT / "docs" / "gallery" / "README.md").read_text()
    assert "python docs/gallery.py" in readme and "_first_pages.pdf" in readme and "_page.png" in readme
    ignore = (ROOT / ".gitignore").read_text()
    assert "docs/gallery/*" in ignore and "!docs/gallery/README.md" in ignore


def test_pdf_pages_counts_page_objects(tmp_path):
    pdf = tmp_path / "x.pdf"
    pdf.write_bytes(b"<< /Type /Pages /Count 2 >> << /Type /Page /Parent 1 >> << /Type/Page >>")
    assert _gallery().pdf_pages(pdf) == 2


@pytest.mark.slow
def test_one_scenario_end_to_end(tmp_path):
    """S2 1x12: workbook, its PDF (a few pages), its first pages, the page, its screenshot, plots."""
    g = _gallery()
    made = dict((p.name, what) for p, what in g.scenario("s2_1x12", g.traces()["s2_1x12"], tmp_path, tmp_path / "lo"))
    for name in ("s2_1x12.xlsx", "s2_1x12.html", "s2_1x12_page.png", "s2_1x12.pdf", "s2_1x12_first_pages.pdf",
                 "loss.png", "params.png"):
        assert name in made and (tmp_path / name).exists() or any(tmp_path.rglob(name)), name
    pages = g.pdf_pages(tmp_path / "s2_1x12.pdf")
    assert 1 < pages <= 12, pages
    assert g.pdf_pages(tmp_path / "s2_1x12_first_pages.pdf") == 2
