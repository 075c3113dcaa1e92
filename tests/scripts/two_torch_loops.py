# Two PyTorch training loops in one script (steptrace's own test script): first an
# nn.Linear with torch.optim.SGD on a DataLoader, then raw tensors updated by hand on the
# same data. Each loop trains other tensors, so each must become its own trace.
import torch
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
X = torch.randn(24, 3)
y = X @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
loader = DataLoader(TensorDataset(X, y), batch_size=8, shuffle=True)

model = torch.nn.Linear(3, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
loss_fn = torch.nn.MSELoss()
for epoch in range(2):
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
print("loop 1 loss", round(loss.item(), 6))

w = torch.zeros(3, 1, requires_grad=True)
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
print("loop 2 loss", round(loss.item(), 6))
