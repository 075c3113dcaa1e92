"""Fit sin(x) with a cubic: raw tensors, autograd, a hand-written update.

Provenance: PyTorch tutorial "Learning PyTorch with Examples",
    https://pytorch.org/tutorials/beginner/pytorch_with_examples.html, section
    "PyTorch: Tensors and autograd" (sub-page
    https://pytorch.org/tutorials/beginner/examples_autograd/polynomial_autograd.html).
    Current version of the page, including its `torch.set_default_device(device)` line.
Changes: our own rendition; 300 iterations instead of 2000 (loss printed every 50
    instead of every 100); a fixed seed (the tutorial has none). The 2000 points, the
    loss (sum of squares), the learning rate 1e-6 and the update under no_grad with
    `.grad = None` are the tutorial's.
Expected: clean - no FAILED verdict, one training run of 300 steps (issue 16:
    set_default_device made the torch hook record twice as many steps).
"""
import math

import torch

torch.manual_seed(0)

dtype = torch.float
# the tutorial picks the current accelerator when there is one; on CPU-only builds it is "cpu"
if hasattr(torch, "accelerator") and torch.accelerator.is_available():
    device = torch.accelerator.current_accelerator().type
else:
    device = "cpu"
print(f"Using {device} device")
torch.set_default_device(device)

# inputs and targets: no gradient needed
x = torch.linspace(-math.pi, math.pi, 2000, dtype=dtype)
y = torch.sin(x)

# one scalar weight per power of x, each tracked by autograd
a = torch.randn((), dtype=dtype, requires_grad=True)
b = torch.randn((), dtype=dtype, requires_grad=True)
c = torch.randn((), dtype=dtype, requires_grad=True)
d = torch.randn((), dtype=dtype, requires_grad=True)

learning_rate = 1e-6
for t in range(300):
    y_pred = a + b * x + c * x ** 2 + d * x ** 3
    loss = (y_pred - y).pow(2).sum()
    if t % 50 == 49:
        print(t, loss.item())

    loss.backward()

    # plain gradient descent; no_grad keeps the update itself out of the graph
    with torch.no_grad():
        a -= learning_rate * a.grad
        b -= learning_rate * b.grad
        c -= learning_rate * c.grad
        d -= learning_rate * d.grad
        a.grad = None
        b.grad = None
        c.grad = None
        d.grad = None

print(f"Result: y = {a.item()} + {b.item()} x + {c.item()} x^2 + {d.item()} x^3")
