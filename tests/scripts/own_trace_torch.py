# A script that already uses steptrace itself (steptrace's own test script): it trains
# three steps, then opens its own trace_torch block for four more. Only one trace_torch
# block may be active, so `steptrace run` closes its own at that point: run 1 holds the
# first three steps and the script's block records the other four.
import torch

from hooks.torch import trace_torch

torch.manual_seed(0)
X = torch.randn(20, 2)
y = X @ torch.tensor([[1.0], [2.0]])
w = torch.zeros(2, 1, requires_grad=True)


def train(n):
    for _ in range(n):
        loss = ((X @ w - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w.sub_(0.1 * w.grad)
            w.grad.zero_()


train(3)
with trace_torch() as tr:
    train(4)
print("own trace steps", tr.trace.n_steps)
print("w", w.detach().ravel().tolist())
