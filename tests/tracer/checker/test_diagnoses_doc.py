"""``docs/DIAGNOSES.md`` lists every diagnosis the checker runs, with an example and a test (issue 10)."""
from pathlib import Path

from tracer.checker.diagnoses import DIAGNOSES

DOC = Path(__file__).resolve().parents[3] / "docs" / "DIAGNOSES.md"


def test_every_diagnosis_kind_has_a_row_with_an_example_and_a_test():
    rows = {}
    for line in DOC.read_text().splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            for kind in cells[0].replace("`", "").split(","):
                rows[kind.strip()] = cells
    for d in DIAGNOSES:
        assert d.kind in rows, f"docs/DIAGNOSES.md has no row for {d.kind}"
        _, what, example, test = rows[d.kind]
        assert what and "`" in example and "tests/" in test, d.kind
        for path in test.replace("`", "").split(","):
            assert (DOC.parents[1] / path.strip()).exists(), path
