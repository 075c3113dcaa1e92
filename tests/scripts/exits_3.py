# Trains (S1's raw-tensor loop, two epochs on a DataLoader) and then exits with code 3
# through sys.exit (steptrace's own test script): steptrace must exit with 3 too and keep
# the run.
import sys

import torch
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
X = torch.randn(40, 2)
y = X @ torch.tensor([[2.0], [-3.4]]) + 4.2
loader = DataLoader(TensorDataset(X, y), batch_size=10, shuffle=True)
w = torch.zeros(2, 1, requires_grad=True)
b = torch.zeros(1, requires_grad=True)
for epoch in range(2):
    for xb, yb in loader:
        l = ((xb @ w + b - yb) ** 2 / 2).sum()
        l.backward()
        with torch.no_grad():
            for p in (w, b):
                p -= 0.03 * p.grad / 10
                p.grad.zero_()
print("trained", l.item())
sys.exit(3)
