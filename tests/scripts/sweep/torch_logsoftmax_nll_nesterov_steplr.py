"""Clean: LogSoftmax + NLLLoss classifier, SGD with Nesterov momentum and weight decay, StepLR.

Provenance: in the style of the PyTorch "Training a Classifier" tutorial and the
    classic MNIST example (https://github.com/pytorch/examples/blob/main/mnist/main.py:
    log_softmax output, F.nll_loss, a StepLR scheduler).
Changes: our own script; synthetic 3-class blobs (120 rows, 4 features), 4-12-3 MLP with
    SiLU, nn.LogSoftmax(dim=1), nn.NLLLoss, SGD(lr 0.05, momentum 0.9, nesterov, weight
    decay 1e-4), StepLR(step_size=1, gamma=0.5), batch 24 shuffled, 3 epochs. Seeds fixed.
Expected: clean - passed, nothing "cannot check".
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(1)
labels = torch.randint(0, 3, (120,))
centres = torch.tensor([[2.0, 0, 0, 1], [0, 2.0, 0, -1], [0, 0, 2.0, 0]])
X = centres[labels] + 0.7 * torch.randn(120, 4)
loader = DataLoader(TensorDataset(X, labels), batch_size=24, shuffle=True)

model = nn.Sequential(nn.Linear(4, 12), nn.SiLU(), nn.Linear(12, 3), nn.LogSoftmax(dim=1))
criterion = nn.NLLLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)

for epoch in range(3):
    model.train()
    correct = 0
    for xb, yb in loader:
        optimizer.zero_grad()
        output = model(xb)
        loss = criterion(output, yb)
        loss.backward()
        optimizer.step()
        correct += (output.argmax(dim=1) == yb).sum().item()
    scheduler.step()
    print(f"epoch {epoch + 1}: loss {loss.item():.4f} acc {correct / len(X):.3f}")
