"""Clean, outside the registry: an MLP with nn.LayerNorm (layer_norm is not modelled).

Provenance: in the style of tutorials adding normalisation to an MLP
    (https://pytorch.org/docs/stable/generated/torch.nn.LayerNorm.html).
Changes: our own script; synthetic regression (64 rows, 4 features), Linear + LayerNorm +
    ReLU + Linear, MSELoss, Adam, batch 16 shuffled, 2 epochs. Seeds fixed.
Expected: clean - but layer_norm is outside the registry: an explicit "cannot check"
    naming it (never FAILED, never a crash, never a silent pass).
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(7)
X = torch.randn(64, 4)
y = X.sum(dim=1, keepdim=True)
loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True)
model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
loss_fn = nn.MSELoss()
for epoch in range(2):
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
