"""Clean: a batch normalised with ``(xb - mean) / std`` and a one-hot MSE target, in the step.

Provenance: in the style of beginner PyTorch classifiers that standardise inputs with the
    training set's mean and std and train on ``F.one_hot(yb, C).float()`` with MSELoss
    (e.g. https://pytorch.org/docs/stable/generated/torch.nn.functional.one_hot.html).
Changes: our own script; a synthetic TensorDataset of 90 rows x 5 features and 3 classes,
    mean/std as Python floats of the whole data, ``F.one_hot(yb, 3).float()`` as the
    target, ``yb.unsqueeze(1)`` kept for an accuracy print, a sigmoid output, MSELoss,
    Adam, batch 15, 2 epochs.
Expected: clean - every step passes, inputs and targets recomputed from the raw rows.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(12)

X = torch.rand(90, 5) * 40 + 10
y = (X[:, 0] + X[:, 1] > 60).long() + (X[:, 2] > 35).long()
mean, std = X.mean().item(), X.std().item()
loader = DataLoader(TensorDataset(X, y), batch_size=15, shuffle=False)

model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3), nn.Sigmoid())
loss_fn = nn.MSELoss()
opt = torch.optim.Adam(model.parameters(), lr=0.01)

for epoch in range(2):
    correct = 0
    for xb, yb in loader:
        xb = (xb - mean) / std
        target = F.one_hot(yb, 3).float()
        out = model(xb)
        loss = loss_fn(out, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        correct += int((out.argmax(dim=1, keepdim=True) == yb.unsqueeze(1)).sum())
    print(f"epoch {epoch + 1}: loss {loss.item():.4f} correct {correct}")
