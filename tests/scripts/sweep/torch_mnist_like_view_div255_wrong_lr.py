"""Buggy: the MNIST-like loop with preprocessing in the step, updating with the wrong lr.

Provenance: in the style of the PyTorch "What is torch.nn really?" tutorial
    (https://pytorch.org/tutorials/beginner/nn_tutorial.html) and MNIST quick starts that
    scale raw pixels with ``xb.view(-1, 784) / 255`` inside the loop.
Changes: our own script; a synthetic TensorDataset of 96 "images" 8x8 of uint8-like floats
    (0..255) and 4 classes, ``xb.view(-1, 64) / 255`` in the step, an MLP, cross-entropy,
    a hand-written SGD update, batch 16, 2 epochs, shuffle off.
Expected: buggy - the update is written by hand, and the last layer's bias is stepped with
    a learning rate ten times the one the other parameters use (a typo): steptrace should
    FAIL the update of that bias.
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(11)

images = torch.randint(0, 256, (96, 8, 8)).float()
labels = (images[:, :4].mean(dim=(1, 2)) // 64).long().clamp(0, 3)
loader = DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=False)

model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
loss_fn = nn.CrossEntropyLoss()
lr = 0.1

for epoch in range(2):
    for xb, yb in loader:
        xb = xb.view(-1, 64) / 255
        loss = loss_fn(model(xb), yb)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for name, p in model.named_parameters():
                step = 10 * lr if name == "2.bias" else lr     # BUG: a typo'd lr for one tensor
                p -= step * p.grad
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
