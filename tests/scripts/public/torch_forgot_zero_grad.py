"""Buggy: the training loop never calls optimizer.zero_grad().

Provenance: Stack Overflow "Why do we need to call zero_grad() in PyTorch?"
    (https://stackoverflow.com/questions/48001598) and the many "my loss goes up /
    oscillates" questions whose answer is the missing zero_grad.
Changes: our own script; synthetic regression data (256 rows, 4 features), an MLP
    4-16-1 with Tanh, MSELoss, SGD lr 0.01, batch 32, 3 epochs. Seeds fixed.
Expected: buggy - gradients accumulate across steps. steptrace should report
    `grad_accumulating`.
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)

X = torch.randn(256, 4)
y = torch.sin(X[:, :1]) + 0.5 * X[:, 1:2] - X[:, 2:3] * X[:, 3:4]
loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True)

model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
criterion = nn.MSELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

for epoch in range(3):
    total = 0.0
    for xb, yb in loader:
        loss = criterion(model(xb), yb)
        loss.backward()                  # BUG: no optimizer.zero_grad() before this
        optimizer.step()
        total += loss.item()
    print(f"epoch {epoch + 1}: mean batch loss {total / len(loader):.5f}")
