"""Buggy: optimizer.step() and then the tutorial's manual update as well (two updates per step).

Provenance: mixes the two update styles of the PyTorch tutorial "What is torch.nn
    really?" (https://pytorch.org/tutorials/beginner/nn_tutorial.html: the manual
    `p -= p.grad * lr` loop and its torch.optim refactor) - a mistake reported on the
    PyTorch forums by readers who add `opt.step()` but keep the no_grad update loop
    ("training is unstable / too fast after switching to optim"; thread not pinned).
Changes: our own script; synthetic 10-class data (320 rows, 20 features),
    nn.Linear(20, 10), F.cross_entropy, SGD lr 0.1, batch 32, 2 epochs. Seeds fixed.
Expected: buggy - every parameter is updated twice per step (once by SGD, once by hand).
    steptrace should report `updated_twice`; a `continuity` finding that names the
    manual update line (`p -= p.grad * lr`) is accepted too (MANIFEST "also_accept").
"""
import torch
import torch.nn.functional as F
from torch import nn, optim

torch.manual_seed(0)

x_train = torch.rand(320, 20)
y_train = (x_train @ torch.randn(20, 10)).argmax(dim=1)
n = x_train.shape[0]
bs = 32
lr = 0.1

model = nn.Linear(20, 10)
opt = optim.SGD(model.parameters(), lr=lr)

for epoch in range(2):
    for i in range((n - 1) // bs + 1):
        xb = x_train[i * bs: i * bs + bs]
        yb = y_train[i * bs: i * bs + bs]
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        with torch.no_grad():            # BUG: left over from the manual version
            for p in model.parameters():
                p -= p.grad * lr
        opt.zero_grad()
    print(f"epoch {epoch + 1}: loss {F.cross_entropy(model(x_train), y_train).item():.5f}")
