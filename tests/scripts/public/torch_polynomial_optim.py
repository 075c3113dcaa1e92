"""Fit sin(x) with a cubic: `nn` model trained by torch.optim.RMSprop.

Provenance: PyTorch tutorial "Learning PyTorch with Examples",
    https://pytorch.org/tutorials/beginner/pytorch_with_examples.html, section
    "PyTorch: optim" (sub-page
    https://pytorch.org/tutorials/beginner/examples_nn/polynomial_optim.html).
Changes: our own rendition; 300 iterations instead of 2000 (loss printed every 50);
    torch.manual_seed(0). RMSprop with lr 1e-3 and MSELoss(reduction="sum") as in the
    tutorial.
Expected: clean - no FAILED verdict, one training run of 300 steps.
"""
import math

import torch

torch.manual_seed(0)

x = torch.linspace(-math.pi, math.pi, 2000)
y = torch.sin(x)

p = torch.tensor([1, 2, 3])
xx = x.unsqueeze(-1).pow(p)

model = torch.nn.Sequential(
    torch.nn.Linear(3, 1),
    torch.nn.Flatten(0, 1),
)
loss_fn = torch.nn.MSELoss(reduction="sum")

learning_rate = 1e-3
optimizer = torch.optim.RMSprop(model.parameters(), lr=learning_rate)
for t in range(300):
    y_pred = model(xx)
    loss = loss_fn(y_pred, y)
    if t % 50 == 49:
        print(t, loss.item())

    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

linear_layer = model[0]
print(f"Result: y = {linear_layer.bias.item()} + {linear_layer.weight[:, 0].item()} x + "
      f"{linear_layer.weight[:, 1].item()} x^2 + {linear_layer.weight[:, 2].item()} x^3")
