"""Clean: SmoothL1Loss(reduction="none") averaged by hand, plus an L1 term, with AdamW.

Provenance: in the style of forum answers that weight per-element losses
    ("use reduction='none' and then .mean()", discuss.pytorch.org), with AdamW.
Changes: our own script; synthetic 2-output regression (64 rows, 4 features), 4-8-2 MLP
    with LeakyReLU(0.1) and Tanh, SmoothL1Loss(beta=0.5, reduction="none").mean() plus
    0.1 * L1Loss(reduction="sum") / batch, AdamW lr 1e-2, batch 16 shuffled, 2 epochs.
Expected: clean - passed, nothing "cannot check".
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(4)
X = torch.randn(64, 4)
Y = torch.stack([X[:, 0] - X[:, 1], X[:, 2] * 0.5 + X[:, 3]], dim=1)
loader = DataLoader(TensorDataset(X, Y), batch_size=16, shuffle=True)

model = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.1), nn.Linear(8, 2), nn.Tanh())
smooth = nn.SmoothL1Loss(beta=0.5, reduction="none")
l1 = nn.L1Loss(reduction="sum")
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)

for epoch in range(2):
    for xb, yb in loader:
        out = model(xb)
        loss = smooth(out, yb).mean() + 0.1 * l1(out, yb) / xb.shape[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
