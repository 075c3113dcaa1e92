"""The continuity diagnosis's comparison of after[k] with before[k + 1], chained or copied."""
import numpy as np

from tracer.checker.diagnoses.continuity import _broken


class _P:
    def __init__(self, before, after):
        self.before, self.after = before, after


def test_a_chained_recording_is_continuous_without_a_comparison():
    rows = np.arange(6 * 5, dtype=np.float32).reshape(6, 5)
    p = _P(rows[:-1], rows[1:])                  # after of step k is before of step k + 1: one copy
    assert not _broken(p, np.arange(4)).any()


def test_copied_rows_are_compared_and_the_changed_boundary_found():
    rng = np.random.default_rng(0)
    after = rng.standard_normal((6, 200_000)).astype(np.float32)      # several blocks of rows
    before = np.concatenate([after[:1] * 0, after[:-1]])             # before[k + 1] == after[k]
    before[4, 12345] += 1e-3                                          # changed between steps 3 and 4
    before[2, 7] = after[1, 7] = np.nan                               # a NaN on both sides is no change
    assert _broken(_P(before, after), np.arange(5)).tolist() == [False, False, False, True, False]
    assert _broken(_P(before, after), np.array([0, 3])).tolist() == [False, True]   # not consecutive


def test_a_copied_before_against_after_views_is_compared():
    rows = np.arange(6 * 5, dtype=np.float64).reshape(6, 5)
    p = _P(rows[:-1].copy(), rows[1:])
    p.before[3, 2] = -1.0
    assert _broken(p, np.array([0, 1, 2, 3])).tolist() == [False, False, True, False]
