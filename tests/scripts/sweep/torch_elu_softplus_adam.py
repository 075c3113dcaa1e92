"""Clean: an nn.Sequential regressor with ELU and Softplus, Adam, a shuffled DataLoader.

Provenance: in the style of the PyTorch "Build the Neural Network" / "Optimizing Model
    Parameters" tutorials (https://pytorch.org/tutorials/beginner/basics/optimization_tutorial.html).
Changes: our own script; synthetic regression (96 rows, 3 features), 3-16-8-1 MLP with
    ELU and Softplus, MSELoss, Adam lr 1e-2, batch 16 shuffled, 2 epochs. Seeds fixed.
Expected: clean - every op is in the registry: passed, nothing "cannot check".
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
X = torch.randn(96, 3)
y = (X[:, :1] * 2.0 - X[:, 1:2] + 0.5 * X[:, 2:3] ** 2) + 0.1 * torch.randn(96, 1)
loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True)

model = nn.Sequential(nn.Linear(3, 16), nn.ELU(), nn.Linear(16, 8), nn.Softplus(), nn.Linear(8, 1))
loss_fn = nn.MSELoss()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

for epoch in range(2):
    for xb, yb in loader:
        pred = model(xb)
        loss = loss_fn(pred, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
