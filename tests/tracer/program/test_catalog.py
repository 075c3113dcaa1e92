"""docs/PROGRAM.md lists exactly the registered operations (the documented vocabulary is the real one)."""
from pathlib import Path

from tracer.program.catalog import markdown


def test_program_doc_embeds_the_registry_table():
    doc = (Path(__file__).resolve().parents[3] / "docs" / "PROGRAM.md").read_text()
    assert markdown() in doc, "regenerate the table: python -m tracer.program.catalog"
