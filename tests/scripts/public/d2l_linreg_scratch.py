"""Linear regression from scratch: a generator data_iter, squared_loss, a hand-written sgd.

Provenance: Dive into Deep Learning (d2l.ai), chapter 3 "Linear Neural Networks",
    section "Linear Regression Implementation from Scratch" (PyTorch tab of the
    0.17 edition, https://d2l.ai/chapter_linear-networks/linear-regression-scratch.html;
    the 1.0 edition moved it to chapter_linear-regression/linear-regression-scratch.html).
Changes: our own rendition without the d2l package (its plotting is left out);
    fixed seeds for torch and `random`. The data is already synthetic in d2l
    (w = [2, -3.4], b = 4.2, noise 0.01, 1000 rows) and kept as is, as are batch size
    10, lr 0.03, 3 epochs, the summed loss and the update that divides by batch_size.
Expected: clean - no FAILED verdict, one run of 300 steps. The division by
    batch_size in sgd() is correct here (the loss is summed, not averaged): it must
    not be reported as double averaging.
"""
import random

import torch

random.seed(0)
torch.manual_seed(0)


def synthetic_data(w, b, num_examples):
    """y = Xw + b + Gaussian noise."""
    X = torch.normal(0, 1, (num_examples, len(w)))
    y = torch.matmul(X, w) + b
    y += torch.normal(0, 0.01, y.shape)
    return X, y.reshape((-1, 1))


true_w = torch.tensor([2, -3.4])
true_b = 4.2
features, labels = synthetic_data(true_w, true_b, 1000)
print("features:", features[0], "\nlabel:", labels[0])


def data_iter(batch_size, features, labels):
    """Yield shuffled mini-batches; the last one may be smaller."""
    num_examples = len(features)
    indices = list(range(num_examples))
    random.shuffle(indices)                 # read the rows in random order
    for i in range(0, num_examples, batch_size):
        batch_indices = torch.tensor(indices[i: min(i + batch_size, num_examples)])
        yield features[batch_indices], labels[batch_indices]


batch_size = 10
w = torch.normal(0, 0.01, size=(2, 1), requires_grad=True)
b = torch.zeros(1, requires_grad=True)


def linreg(X, w, b):
    return torch.matmul(X, w) + b


def squared_loss(y_hat, y):
    return (y_hat - y.reshape(y_hat.shape)) ** 2 / 2


def sgd(params, lr, batch_size):
    """Minibatch SGD on a summed loss: divide by the batch size here."""
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


lr = 0.03
num_epochs = 3
net = linreg
loss = squared_loss

for epoch in range(num_epochs):
    for X, y in data_iter(batch_size, features, labels):
        l = loss(net(X, w, b), y)      # per-example losses, shape (batch_size, 1)
        l.sum().backward()
        sgd([w, b], lr, batch_size)
    with torch.no_grad():
        train_l = loss(net(features, w, b), labels)
        print(f"epoch {epoch + 1}, loss {float(train_l.mean()):f}")

print(f"error in estimating w: {true_w - w.reshape(true_w.shape)}")
print(f"error in estimating b: {true_b - b}")
