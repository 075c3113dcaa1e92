"""hooks.rows.RowMatcher: batch rows found by content, for the Keras and PyTorch hooks alike."""
from __future__ import annotations

import numpy as np
import pytest

from hooks.rows import RowMatcher


def test_unique_rows_are_found_by_inputs_and_targets():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.arange(6, dtype=np.float32)
    m = RowMatcher(x, y)
    assert m.match(x[[4, 0, 5]], y[[4, 0, 5]]).tolist() == [4, 0, 5]
    # same inputs, other target: not in the data
    assert m.match(x[[1]], np.array([99.0], np.float32)) is None


def test_repeated_rows_are_handed_out_in_turn_within_an_epoch():
    x = np.array([[1.0], [2.0], [1.0]], np.float32)
    y = np.array([[0.0], [0.0], [0.0]], np.float32)
    m = RowMatcher(x, y)
    assert m.match(x[[0, 0]], y[[0, 0]]).tolist() == [0, 2]
    assert m.match(x[[0]], y[[0]]).tolist() == [0]          # a third copy wraps around
    m.new_epoch()
    assert m.match(x[[2, 1]], y[[2, 1]]).tolist() == [0, 1]


def test_first_policy_matches_inputs_alone_and_keeps_the_first_position():
    x = np.array([[1.0, 1.0], [2.0, 2.0], [1.0, 1.0]])
    m = RowMatcher(x, repeats="first")
    assert m.match(np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]])).tolist() == [0, 0, 1]
    assert m.match(np.array([[3.0, 3.0]])) is None
    # targets passed with the batch do not count when the data has none
    assert m.match(np.array([[2.0, 2.0]]), np.array([[7.0]])).tolist() == [1]


def test_the_data_is_compared_in_the_batch_dtype():
    x = np.array([[0.1], [0.2]], dtype=np.float64)
    m = RowMatcher(x, repeats="first")
    assert m.match(x.astype(np.float32)[[1]]).tolist() == [1]


def test_other_widths_match_nothing():
    m = RowMatcher(np.ones((3, 2)), np.ones((3, 1)))
    assert m.match(np.ones((1, 3)), np.ones((1, 1))) is None


def test_without_data_the_table_grows_in_order_of_first_appearance():
    m = RowMatcher()
    a, b = np.array([[5.0]]), np.array([[6.0]])
    assert m.match(np.vstack([a, b]), np.vstack([a, b])).tolist() == [0, 1]
    # within the epoch every repeat of a row is a new sample
    assert m.match(np.vstack([b, b]), np.vstack([b, b])).tolist() == [2, 3]
    m.new_epoch()
    assert m.match(np.vstack([b, a]), np.vstack([b, a])).tolist() == [1, 0]
    x, y = m.seen_data()
    assert x[:, 0].tolist() == [5.0, 6.0, 6.0, 6.0] and y.shape == (4, 1)


def test_many_unique_rows_take_the_vectorised_path_and_agree():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3)).astype(np.float32)
    y = rng.normal(size=(500, 1)).astype(np.float32)
    m = RowMatcher(x, y)
    order = rng.permutation(500)[:64]
    assert m.match(x[order], y[order]).tolist() == order.tolist()


def test_an_unknown_repeats_policy_is_refused():
    with pytest.raises(ValueError, match="repeats"):
        RowMatcher(np.ones((1, 1)), repeats="last")


def test_wide_rows_hash_a_sample_of_their_words_and_every_hit_is_still_checked_in_full():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 64)).astype(np.float32)          # 32 words a row: 16 are sampled
    y = rng.normal(size=(300, 1)).astype(np.float32)
    m = RowMatcher(x, y)
    order = rng.permutation(300)[:40]
    assert m.match(x[order], y[order]).tolist() == order.tolist()
    assert m._offsets is not None                             # the sampled hash was used
    unsampled = sorted(set(range(64)) - {int(i) // 4 for i in m._offsets})[0]   # a float no sample reads
    forged = x[order].copy()
    forged[3, unsampled] += 1.0                               # same sampled words, another row
    assert m.match(forged, y[order]) is None


def test_rows_the_sample_cannot_tell_apart_fall_back_to_the_whole_row():
    rng = np.random.default_rng(2)
    x = np.zeros((200, 64), np.float32)
    x[:, 2] = rng.permutation(200)                            # rows differ in one unsampled float only
    y = np.zeros((200, 1), np.float32)
    m = RowMatcher(x, y)
    order = rng.permutation(200)[:30]
    assert m.match(x[order], y[order]).tolist() == order.tolist()
    assert m._offsets is None and m._table is None            # whole-row hashes, still the fast path


def test_wide_data_with_repeated_rows_keeps_the_sampled_hash_and_hands_copies_out_in_turn():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(100, 64)).astype(np.float32)
    x[7] = x[3]                                               # a repeated row: alike in every word
    y = np.zeros((100, 1), np.float32)
    m = RowMatcher(x, y)
    assert m.match(x[[3, 3, 5]], y[[3, 3, 5]]).tolist() == [3, 7, 5]
    assert m._offsets is not None                             # the sample tells distinct rows apart
    assert m.match(x[[10, 20]], y[[10, 20]]).tolist() == [10, 20]


@pytest.mark.parametrize("width", [3, 500])           # whole-row and sampled hashes
def test_batches_matched_at_once_equal_each_batch_matched_alone(width):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(300, width)).astype(np.float32), rng.normal(size=(300, 1)).astype(np.float32)
    order = rng.permutation(300)
    batches = [(x[order[i:min(i + 50, 280)]], y[order[i:min(i + 50, 280)]]) for i in range(0, 280, 50)]   # the last of 30 rows
    m, alone = RowMatcher(x, y), RowMatcher(x, y)
    assert m.match_batches(batches) is None                 # the table is built by the first match
    m.match(*batches[0])
    got = m.match_batches(batches)
    assert [r.tolist() for r in got] == [alone.match(bx, by).tolist() for bx, by in batches]
    assert np.concatenate(got).tolist() == order[:280].tolist()
    planted = batches[:2] + [(batches[2][0], batches[2][1] + np.float32(1))]   # a target not in the data
    assert m.match_batches(planted) is None and m.match(*planted[2]) is None
    assert m.match_batches([(bx.astype(np.float64), by) for bx, by in batches]) is None   # another dtype


def test_batches_with_repeated_data_rows_are_left_to_the_in_turn_path():
    x = np.array([[1.0], [2.0], [1.0], [3.0]], np.float32)
    y = np.zeros((4, 1), np.float32)
    m = RowMatcher(x, y)
    assert m.match(x[[1]], y[[1]]).tolist() == [1]
    assert m.match_batches([(x[[3]], y[[3]]), (x[[0]], y[[0]])]) is None    # row 0 has a copy: in turn
    assert m.match_batches([(x[[3]], y[[3]]), (x[[1]], y[[1]])])[1].tolist() == [1]
