"""Buggy: the mean loss divided by the batch size again (`F.mse_loss(pred, y) / batch_size`).

Provenance: a recurring forum mistake, e.g. PyTorch forum questions "Should I divide
    the loss by the batch size?" / "loss.item() * batch_size or loss / batch_size?"
    (discuss.pytorch.org) and the Stack Overflow question "PyTorch: Loss divided by
    batch size?" - users who learned from summed losses divide F.mse_loss's already
    averaged value once more. Exact thread not pinned.
Changes: our own script; synthetic regression data (512 rows, 4 features), an
    nn.Linear(4, 1) model, SGD lr 0.1, batch 32, 4 epochs. Seeds fixed.
Expected: buggy - averaged twice: every step is 32 times smaller than intended
    (effective lr 0.1/32). steptrace should report `double_averaging`.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)

batch_size = 32
X = torch.randn(512, 4)
y = X @ torch.tensor([[2.0], [-1.0], [0.5], [3.0]]) - 1.0 + 0.1 * torch.randn(512, 1)
loader = DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=True)

model = nn.Linear(4, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

for epoch in range(4):
    for xb, yb in loader:
        pred = model(xb)
        loss = F.mse_loss(pred, yb) / batch_size     # BUG: mse_loss already averages
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        print(f"epoch {epoch + 1}: full-data MSE {F.mse_loss(model(X), y).item():.5f}")
