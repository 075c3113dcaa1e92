"""Concise linear regression: TensorDataset + DataLoader, nn.Linear, MSELoss, optim.SGD.

Provenance: Dive into Deep Learning (d2l.ai), chapter 3 "Linear Neural Networks",
    section "Concise Implementation of Linear Regression" (PyTorch tab of the 0.17
    edition, https://d2l.ai/chapter_linear-networks/linear-regression-concise.html).
Changes: our own rendition without the d2l package (d2l.synthetic_data and
    d2l.load_array written out); fixed seed. Data (w = [2, -3.4], b = 4.2, 1000 rows),
    batch size 10, `net[0].weight.data.normal_(0, 0.01)`, lr 0.03 and 3 epochs as in
    the book.
Expected: clean - no FAILED verdict, one run of 300 steps.
"""
import torch
from torch import nn
from torch.utils import data

torch.manual_seed(0)


def synthetic_data(w, b, num_examples):
    X = torch.normal(0, 1, (num_examples, len(w)))
    y = torch.matmul(X, w) + b
    y += torch.normal(0, 0.01, y.shape)
    return X, y.reshape((-1, 1))


true_w = torch.tensor([2, -3.4])
true_b = 4.2
features, labels = synthetic_data(true_w, true_b, 1000)


def load_array(data_arrays, batch_size, is_train=True):
    """A PyTorch data iterator over in-memory tensors."""
    dataset = data.TensorDataset(*data_arrays)
    return data.DataLoader(dataset, batch_size, shuffle=is_train)


batch_size = 10
data_iter = load_array((features, labels), batch_size)
print(next(iter(data_iter))[0].shape)

net = nn.Sequential(nn.Linear(2, 1))
net[0].weight.data.normal_(0, 0.01)
net[0].bias.data.fill_(0)

loss = nn.MSELoss()
trainer = torch.optim.SGD(net.parameters(), lr=0.03)

num_epochs = 3
for epoch in range(num_epochs):
    for X, y in data_iter:
        l = loss(net(X), y)
        trainer.zero_grad()
        l.backward()
        trainer.step()
    l = loss(net(features), labels)
    print(f"epoch {epoch + 1}, loss {l:f}")

w = net[0].weight.data
print("error in estimating w:", true_w - w.reshape(true_w.shape))
b = net[0].bias.data
print("error in estimating b:", true_b - b)
