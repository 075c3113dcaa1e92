"""Display formatting: a few significant digits, exponents without padding, real plurals."""
import pytest

from tracer.display import compact_rows, count, num
from tracer.math import get_optimizer


@pytest.mark.parametrize("value,digits,text", [
    (0.05000000074505806, 4, "0.05"), (9.99999e-07, 4, "1e-6"), (1e-7, 6, "1e-7"), (20.074485778808594, 4, "20.07"),
    (0.65811384, 3, "0.658"), (0.15811387, 3, "0.158"), (0.0, 4, "0"), (1000.0, 4, "1000"),
    (2937.686334634683, 3, "2938"), (1.5e7, 4, "1.5e7"), (-0.0250919762, 4, "-0.02509"), (float("nan"), 4, "n/a"),
    (True, 4, "True"), (12, 4, "12"),
])
def test_num_rounds_for_reading(value, digits, text):
    assert num(value, digits) == text


def test_plurals():
    assert count(1, "step") == "1 step" and count(12, "step") == "12 steps" and count(0, "row") == "0 rows"
    assert count(3, "batch", "batches") == "3 batches"


def test_rows_used_as_ranges():
    assert compact_rows(range(1000)) == "0-999 (1000 rows)"
    assert compact_rows([0, 1, 2, 3, 8, 10, 11, 12]) == "0-3, 8, 10-12 (8 rows)"
    assert compact_rows([7]) == "7"
    assert compact_rows(list(range(0, 200, 2))).endswith("... (100 rows)")


def test_optimizer_descriptions_show_what_was_typed():
    """A float32 learning rate (Keras) is shown as the 0.05 the user typed, 1e-7 without padding."""
    rule = get_optimizer({"name": "rmsprop", "convention": "keras", "lr": 0.05000000074505806, "epsilon": 1e-07})
    text = rule.describe()
    assert "lr=0.05," in text and "epsilon=1e-7" in text and "0.0500000" not in text
    rule = get_optimizer({"name": "sgd", "convention": "torch", "lr": 9.99999e-07})
    assert "lr=1e-6" in rule.describe()
