"""Buggy: gradient accumulation over 4 micro-batches without dividing the loss by 4.

Provenance: PyTorch forum thread "How to implement accumulated gradient?"
    (discuss.pytorch.org/t/how-to-implement-accumulated-gradient/3822, thread id from
    memory) and the many blog/forum renditions of the pattern
    `loss.backward(); if (i + 1) % accumulation_steps == 0: optimizer.step();
    optimizer.zero_grad()`, where the `loss = loss / accumulation_steps` line is the
    one people forget.
Changes: our own script; synthetic 3-class classification data (512 rows, 10
    features), MLP 10-32-3, CrossEntropyLoss, SGD lr 0.05, micro-batches of 16,
    accumulation_steps 4 (effective batch 64), 2 epochs (16 optimizer steps). Seeds fixed.
Expected: buggy - each optimizer step uses the sum of 4 mean gradients (4x the
    intended step). steptrace should report `accumulation` (steps are optimizer steps;
    the backward calls between them are micro-batches of one step).
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)

X = torch.randn(512, 10)
y = (X[:, :3] * torch.tensor([1.0, -1.0, 0.5])).argmax(dim=1)
loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True)

model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
accumulation_steps = 4

optimizer.zero_grad()
for epoch in range(2):
    correct = 0
    for i, (xb, yb) in enumerate(loader):
        out = model(xb)
        loss = criterion(out, yb)         # BUG: should be criterion(out, yb) / accumulation_steps
        loss.backward()
        if (i + 1) % accumulation_steps == 0:
            optimizer.step()
            optimizer.zero_grad()
        correct += (out.argmax(dim=1) == yb).sum().item()
    print(f"epoch {epoch + 1}: train accuracy {correct / len(X):.4f}, last loss {loss.item():.5f}")
