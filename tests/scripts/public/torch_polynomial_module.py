"""Fit sin(x) with a cubic: a custom nn.Module with four nn.Parameter scalars, SGD.

Provenance: PyTorch tutorial "Learning PyTorch with Examples",
    https://pytorch.org/tutorials/beginner/pytorch_with_examples.html, section
    "PyTorch: Custom nn Modules" (sub-page
    https://pytorch.org/tutorials/beginner/examples_nn/polynomial_module.html).
Changes: our own rendition; 300 iterations instead of 2000 (loss printed every 50);
    torch.manual_seed(0). Module, MSELoss(reduction="sum") and SGD(lr=1e-6) as in the
    tutorial.
Expected: clean - no FAILED verdict, one training run of 300 steps.
"""
import math

import torch

torch.manual_seed(0)


class Polynomial3(torch.nn.Module):
    """y = a + b x + c x^2 + d x^3 with four trainable scalars."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(()))
        self.b = torch.nn.Parameter(torch.randn(()))
        self.c = torch.nn.Parameter(torch.randn(()))
        self.d = torch.nn.Parameter(torch.randn(()))

    def forward(self, x):
        return self.a + self.b * x + self.c * x ** 2 + self.d * x ** 3

    def string(self):
        return f"y = {self.a.item()} + {self.b.item()} x + {self.c.item()} x^2 + {self.d.item()} x^3"


x = torch.linspace(-math.pi, math.pi, 2000)
y = torch.sin(x)

model = Polynomial3()
criterion = torch.nn.MSELoss(reduction="sum")
optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
for t in range(300):
    y_pred = model(x)
    loss = criterion(y_pred, y)
    if t % 50 == 49:
        print(t, loss.item())

    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

print(f"Result: {model.string()}")
