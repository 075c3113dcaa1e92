"""Clean, partly outside the registry: fine-tuning with per-group learning rates, then NAdam.

Provenance: in the style of the torch.optim documentation's "Per-parameter options"
    (https://pytorch.org/docs/stable/optim.html#per-parameter-options:
    `optim.SGD([{'params': model.base.parameters()}, {'params': model.classifier.parameters(),
    'lr': 1e-3}], lr=1e-2, momentum=0.9)`) and fine-tuning tutorials; a second loop uses
    torch.optim.NAdam.
Changes: our own script; synthetic regression (40 rows, 3 features), a 3-4-1 MLP whose
    head trains at lr 0.01 and body at 0.05 (momentum 0.9, CosineAnnealingLR), 2 epochs of
    batch 10; then a Linear(3, 1) under NAdam for 4 steps. Seeds fixed.
Expected: clean - the per-group settings and NAdam are not modelled: each run is
    incomplete, naming what it cannot check (never FAILED, never a silent pass).
"""
import torch
from torch import nn

torch.manual_seed(11)
X = torch.randn(40, 3)
y = X @ torch.tensor([[1.0], [2.0], [-1.0]]) + 0.5
model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
optimizer = torch.optim.SGD([{"params": model[0].parameters()},
                             {"params": model[2].parameters(), "lr": 0.01}], lr=0.05, momentum=0.9)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)
for epoch in range(2):
    for i in range(0, 40, 10):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(X[i:i + 10]), y[i:i + 10])
        loss.backward()
        optimizer.step()
    scheduler.step()
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}")

head = nn.Linear(3, 1)
optimizer = torch.optim.NAdam(head.parameters(), lr=0.01)
for i in range(0, 40, 10):
    optimizer.zero_grad()
    nn.functional.mse_loss(head(X[i:i + 10]), y[i:i + 10]).backward()
    optimizer.step()
print("done")
