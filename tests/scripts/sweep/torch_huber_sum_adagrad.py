"""Clean: regression with HuberLoss(reduction="sum") and Adagrad, a Sigmoid hidden layer.

Provenance: in the style of robust-regression tutorials using torch.nn.HuberLoss
    (https://pytorch.org/docs/stable/generated/torch.nn.HuberLoss.html) with Adagrad.
Changes: our own script; synthetic data with outliers (80 rows, 2 features), 2-6-1 MLP
    with Sigmoid, HuberLoss(delta=0.5, reduction="sum"), Adagrad lr 0.05, batch 20 (no
    shuffle), 2 epochs. Seeds fixed.
Expected: clean - passed, nothing "cannot check".
"""
import torch
from torch import nn

torch.manual_seed(3)
X = torch.randn(80, 2)
y = X @ torch.tensor([[1.5], [-0.7]]) + 0.3
y[::10] += 5.0                                   # outliers
model = nn.Sequential(nn.Linear(2, 6), nn.Sigmoid(), nn.Linear(6, 1))
criterion = nn.HuberLoss(delta=0.5, reduction="sum")
optimizer = torch.optim.Adagrad(model.parameters(), lr=0.05)

for epoch in range(2):
    for i in range(0, len(X), 20):
        xb, yb = X[i:i + 20], y[i:i + 20]
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
