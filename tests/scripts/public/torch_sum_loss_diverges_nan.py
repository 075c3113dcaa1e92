"""Buggy: a summed loss over large batches with a learning rate tuned for a mean: NaN.

Provenance: the classic "loss becomes nan after a few iterations" question, e.g.
    Stack Overflow "PyTorch linear regression loss increases / becomes nan" and
    "Why does my loss become NaN?" (exact question not pinned): MSELoss(reduction="sum")
    (or size_average=False in old code) multiplies the gradient by the batch size, so an
    lr that works for the mean makes gradient descent diverge.
Changes: our own script; synthetic data (1024 rows, 5 features with scale ~3), nn.Linear,
    batch 256, SGD lr 0.01, 4 epochs; loss printed per step. Seeds fixed.
Expected: buggy - the run diverges to inf/NaN within the first epoch. steptrace should
    report `non_finite` (first inf/NaN step, after the loss grew).
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)

X = 3.0 * torch.randn(1024, 5)
y = X @ torch.tensor([[1.0], [-2.0], [0.5], [0.0], [3.0]]) + 2.0 + torch.randn(1024, 1)
loader = DataLoader(TensorDataset(X, y), batch_size=256, shuffle=False)

model = nn.Linear(5, 1)
criterion = nn.MSELoss(reduction="sum")          # BUG (with lr=0.01): gradients x256
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

step = 0
for epoch in range(4):
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
        step += 1
        print(f"step {step}: loss {loss.item():.6g}")
