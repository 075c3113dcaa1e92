"""Clean: binary classifier with GELU(tanh), BCEWithLogitsLoss and centered RMSprop.

Provenance: in the style of "PyTorch binary classification" tutorials (e.g.
    https://machinelearningmastery.com/building-a-binary-classification-model-in-pytorch/):
    a logits output and nn.BCEWithLogitsLoss.
Changes: our own script; synthetic two-blob data (128 rows, 5 features), 5-10-1 MLP with
    GELU(approximate="tanh"), BCEWithLogitsLoss, RMSprop(lr 1e-2, centered=True), batch 32
    shuffled, 2 epochs. Seeds fixed.
Expected: clean - passed, nothing "cannot check".
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(2)
labels = (torch.rand(128) < 0.5).float()
X = torch.randn(128, 5) + labels.unsqueeze(1)
y = labels.unsqueeze(1)
loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True)

model = nn.Sequential(nn.Linear(5, 10), nn.GELU(approximate="tanh"), nn.Linear(10, 1))
criterion = nn.BCEWithLogitsLoss()
optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-2, centered=True)

for epoch in range(2):
    for xb, yb in loader:
        logits = model(xb)
        loss = criterion(logits, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
