"""Clean: CrossEntropyLoss with probability targets (mixup-style) and with label smoothing.

Provenance: in the style of the torch.nn.CrossEntropyLoss documentation examples
    (https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html: "Example of
    target with class probabilities") and label-smoothing tutorials.
Changes: our own script; synthetic 4-class data (96 rows, 6 features), 6-16-4 MLP with
    ReLU; loss = CE(probability targets) + CE(class indices, label_smoothing=0.1) / 2;
    SGD with momentum 0.9, batch 32 shuffled, 2 epochs. Seeds fixed.
Expected: clean - passed, nothing "cannot check".
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(5)
labels = torch.randint(0, 4, (96,))
X = torch.randn(96, 6) + nn.functional.one_hot(labels, 6).float() * 2
soft = nn.functional.one_hot(labels, 4).float() * 0.8 + 0.05    # rows sum to 1
loader = DataLoader(TensorDataset(X, labels, soft), batch_size=32, shuffle=True)

model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
ce_soft = nn.CrossEntropyLoss()
ce_smooth = nn.CrossEntropyLoss(label_smoothing=0.1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

for epoch in range(2):
    for xb, yb, pb in loader:
        logits = model(xb)
        loss = (ce_soft(logits, pb) + ce_smooth(logits, yb)) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
