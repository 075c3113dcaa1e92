"""hooks._busy: the guard that keeps the PyTorch hook off another framework's training.

Keras on its torch backend calls ``backward`` and writes its parameters in place; while
the Keras hook holds :func:`framework_busy`, the torch hook records nothing of it. Outside
the guard a hand-written loop is traced as before; the guard is per thread and nests.
"""
import threading

import pytest
import torch

from hooks._busy import busy_framework, framework_busy, torch_should_ignore
from hooks.torch import trace_torch

pytestmark = pytest.mark.torch


def test_guard_nests_and_is_per_thread():
    assert not torch_should_ignore() and busy_framework() is None
    seen = {}
    with framework_busy("keras"):
        with framework_busy("keras-step"):
            assert busy_framework() == "keras-step"
        assert torch_should_ignore() and busy_framework() == "keras"
        t = threading.Thread(target=lambda: seen.update(other=torch_should_ignore()))
        t.start()
        t.join()
    assert seen == {"other": False}
    assert not torch_should_ignore()
    with pytest.raises(RuntimeError), framework_busy("keras"):
        raise RuntimeError("the guard comes off on errors too")
    assert busy_framework() is None


def _loop(steps, hand_update=False):
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    w = torch.zeros(3, 1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        if hand_update:
            with torch.no_grad():
                w -= 0.1 * w.grad
        else:
            opt.step()
    return w.detach().clone()


@pytest.mark.parametrize("hand_update", [False, True])
def test_torch_hook_ignores_training_inside_the_guard(hand_update):
    with trace_torch() as tr:
        with framework_busy("keras"):
            inside = _loop(3, hand_update)
        outside = _loop(4, hand_update)
    assert [t.n_steps for t in tr.traces] == [4]          # only the loop outside the guard
    assert torch.equal(inside, _loop(3, hand_update))     # and the guarded loop ran unchanged
    assert torch.equal(outside, _loop(4, hand_update))
