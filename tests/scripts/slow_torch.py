# A small PyTorch training loop that takes a couple of seconds (steptrace's own test
# script, for the progress line): S1-style raw tensors on a DataLoader, a short pause per
# step standing in for a bigger model, one print per epoch.
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
X = torch.randn(30, 2)
y = X @ torch.tensor([[2.0], [-3.4]]) + 4.2
loader = DataLoader(TensorDataset(X, y), batch_size=5, shuffle=True)
w = torch.zeros(2, 1, requires_grad=True)
b = torch.zeros(1, requires_grad=True)
for epoch in range(3):
    for xb, yb in loader:
        loss = ((xb @ w + b - yb) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= 0.1 * w.grad
            b -= 0.1 * b.grad
            w.grad.zero_()
            b.grad.zero_()
        time.sleep(0.1)
    print(f"epoch {epoch + 1} loss {loss.item():.4f}")
