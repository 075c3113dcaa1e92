"""Buggy: a parameter rescaled by hand after optimizer.step() (`weight.data *= 0.99`).

Provenance: PyTorch forum questions on adding weight decay / a constraint by hand
    after the optimizer step, e.g. "How to apply weight decay manually?" and the
    `p.data.clamp_(...)`/`p.data.mul_(...)` after `optimizer.step()` pattern (WGAN
    weight clipping) on discuss.pytorch.org; exact thread not pinned.
Changes: our own script; synthetic regression data (256 rows, 5 features), an
    nn.Linear(5, 1) model, SGD lr 0.05, batch 32, 3 epochs; the weight is shrunk by 1%
    after every step. Seeds fixed.
Expected: buggy - the parameter changes outside the recorded update, between the
    optimizer's step and the next step. steptrace should report `continuity` (the
    update line `model.weight.data *= 0.99` named).
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)

X = torch.randn(256, 5)
y = X @ torch.tensor([[0.5], [1.0], [-1.5], [2.0], [0.0]]) + 0.3 + 0.05 * torch.randn(256, 1)
loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True)

model = nn.Linear(5, 1)
criterion = nn.MSELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

for epoch in range(3):
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
        model.weight.data *= 0.99        # BUG: a second, unrecorded change of the weight
    print(f"epoch {epoch + 1}: last batch loss {loss.item():.5f}")
print("weight:", [round(v, 4) for v in model.weight.view(-1).tolist()])
