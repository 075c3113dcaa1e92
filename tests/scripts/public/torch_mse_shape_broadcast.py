"""Buggy: predictions of shape (N, 1) against targets of shape (N,) in nn.MSELoss.

Provenance: one of the most asked PyTorch regression questions, e.g. Stack Overflow
    "PyTorch: loss not decreasing / linear regression converges to the mean" and the
    PyTorch forum threads quoting the warning "Using a target size (torch.Size([32]))
    that is different to the input size (torch.Size([32, 1])). This will likely lead to
    incorrect results due to broadcasting." (discuss.pytorch.org; exact thread not
    pinned).
Changes: our own script; synthetic data (256 rows, 3 features, y = Xw + 0.5 + noise,
    y kept 1-D as a pandas column would give it), nn.Linear(3, 1), SGD lr 0.05,
    batch 32, 5 epochs. Seeds fixed.
Expected: buggy - the one bug is the (32, 1) vs (32,) broadcast inside MSELoss (every
    prediction is compared with every target). steptrace should report
    `loss_broadcast`. PyTorch's UserWarning goes to stderr; stdout is deterministic.
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)

X = torch.randn(256, 3)
y = X @ torch.tensor([1.5, -2.0, 0.7]) + 0.5 + 0.1 * torch.randn(256)   # shape (256,)
loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True)

model = nn.Linear(3, 1)
criterion = nn.MSELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

for epoch in range(5):
    running = 0.0
    for xb, yb in loader:
        optimizer.zero_grad()
        out = model(xb)                 # (32, 1)
        loss = criterion(out, yb)       # BUG: yb is (32,): broadcast to (32, 32)
        loss.backward()
        optimizer.step()
        running += loss.item()
    print(f"epoch {epoch + 1}: loss {running / len(loader):.5f}")

print("weights:", [round(v, 4) for v in model.weight.view(-1).tolist()], "bias:", round(model.bias.item(), 4))
