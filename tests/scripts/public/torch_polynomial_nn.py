"""Fit sin(x) with a cubic: the `nn` package, update written by hand.

Provenance: PyTorch tutorial "Learning PyTorch with Examples",
    https://pytorch.org/tutorials/beginner/pytorch_with_examples.html, section
    "PyTorch: nn" (sub-page
    https://pytorch.org/tutorials/beginner/examples_nn/polynomial_nn.html).
Changes: our own rendition; 300 iterations instead of 2000 (loss printed every 50);
    torch.manual_seed(0) for the layer's initialisation. Features
    `x.unsqueeze(-1).pow(p)`, `nn.Sequential(nn.Linear(3, 1), nn.Flatten(0, 1))`,
    `MSELoss(reduction="sum")`, lr 1e-6 and the manual update loop are the tutorial's.
Expected: clean - no FAILED verdict, one training run of 300 steps (issue 16: the
    full-batch rows must be stored once, not once per step).
"""
import math

import torch

torch.manual_seed(0)

x = torch.linspace(-math.pi, math.pi, 2000)
y = torch.sin(x)

# x, x^2, x^3 as three columns: shape (2000, 3)
p = torch.tensor([1, 2, 3])
xx = x.unsqueeze(-1).pow(p)

# Linear(3, 1) gives (2000, 1); Flatten(0, 1) turns it into (2000,) to match y
model = torch.nn.Sequential(
    torch.nn.Linear(3, 1),
    torch.nn.Flatten(0, 1),
)
loss_fn = torch.nn.MSELoss(reduction="sum")

learning_rate = 1e-6
for t in range(300):
    y_pred = model(xx)
    loss = loss_fn(y_pred, y)
    if t % 50 == 49:
        print(t, loss.item())

    model.zero_grad()
    loss.backward()

    with torch.no_grad():
        for param in model.parameters():
            param -= learning_rate * param.grad

linear_layer = model[0]
print(f"Result: y = {linear_layer.bias.item()} + {linear_layer.weight[:, 0].item()} x + "
      f"{linear_layer.weight[:, 1].item()} x^2 + {linear_layer.weight[:, 2].item()} x^3")
