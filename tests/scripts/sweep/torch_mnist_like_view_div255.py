"""Clean: an MNIST-like loop that preprocesses each batch inside the step.

Provenance: in the style of the PyTorch "What is torch.nn really?" tutorial
    (https://pytorch.org/tutorials/beginner/nn_tutorial.html) and MNIST quick starts that
    scale raw pixels with ``xb.view(-1, 784) / 255`` inside the loop.
Changes: our own script; a synthetic TensorDataset of 96 "images" 8x8 of uint8-like floats
    (0..255) and 4 classes, ``xb.view(-1, 64) / 255`` in the step, an MLP, cross-entropy,
    SGD with momentum, batch 16, 2 epochs, shuffle off.
Expected: clean - every step passes, the preprocessing is recomputed from the raw rows.
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
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

for epoch in range(2):
    for xb, yb in loader:
        xb = xb.view(-1, 64) / 255
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
