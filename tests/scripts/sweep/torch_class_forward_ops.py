"""Clean: a model written as a class whose forward uses cat, view, mean(keepdim), where, clamp.

Provenance: in the style of the PyTorch "Defining a Neural Network" recipe
    (https://pytorch.org/tutorials/recipes/recipes/defining_a_neural_network.html): an
    nn.Module subclass with a hand-written forward.
Changes: our own script; synthetic regression (72 rows, 2x3 features flattened), two
    branches joined with torch.cat, x.view, a keepdim mean as an extra feature,
    torch.where for a leaky gate, clamp; MSELoss; SGD lr 0.05; batch 12, 2 epochs.
Expected: clean - passed, nothing "cannot check".
"""
import torch
from torch import nn

torch.manual_seed(6)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(3, 4)
        self.head = nn.Linear(9, 1)

    def forward(self, x):
        x = x.view(-1, 2, 3)
        left, right = x[:, 0, :], x[:, 1, :]
        h = torch.cat([self.a(left), self.b(right)], dim=1)
        h = torch.where(h > 0, h, 0.1 * h)
        m = h.mean(dim=1, keepdim=True)
        h = torch.cat([h, m], dim=1).clamp(-3.0, 3.0)
        return self.head(h)


X = torch.randn(72, 6)
y = X[:, :3].sum(dim=1, keepdim=True) - X[:, 3:].mean(dim=1, keepdim=True)
model = Net()
criterion = nn.MSELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

for epoch in range(2):
    perm = torch.randperm(len(X))
    for i in range(0, len(X), 12):
        idx = perm[i:i + 12]
        optimizer.zero_grad()
        loss = criterion(model(X[idx]), y[idx])
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
