"""Buggy: a binary classifier whose single output unit goes through softmax.

Provenance: Stack Overflow / PyTorch forum questions "Model always predicts 1 /
    loss does not change" for binary classification with `nn.Softmax(dim=1)` on a
    one-unit output and BCELoss (softmax over one unit is always 1; e.g. "PyTorch
    binary classification: loss not decreasing with softmax", exact question not pinned).
Changes: our own script; synthetic two-blob data (256 rows, 4 features, 0/1 labels),
    MLP 4-8-1 + Softmax(dim=1), BCELoss, SGD lr 0.1, batch 32, 2 epochs. Seeds fixed.
Expected: buggy - every gradient is exactly 0 (softmax over a single unit), nothing
    learns. steptrace should report `dead_gradient` naming the softmax.
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)

labels = (torch.rand(256) < 0.5).float()
X = torch.randn(256, 4) + 1.5 * labels.unsqueeze(1)
y = labels.unsqueeze(1)
loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True)

model = nn.Sequential(
    nn.Linear(4, 8),
    nn.ReLU(),
    nn.Linear(8, 1),
    nn.Softmax(dim=1),                   # BUG: softmax over one unit is always 1.0
)
criterion = nn.BCELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

for epoch in range(2):
    total, correct = 0.0, 0
    for xb, yb in loader:
        optimizer.zero_grad()
        out = model(xb)
        loss = criterion(out, yb)
        loss.backward()
        optimizer.step()
        total += loss.item()
        correct += ((out > 0.5).float() == yb).sum().item()
    print(f"epoch {epoch + 1}: loss {total / len(loader):.4f}, accuracy {correct / len(X):.4f}")
