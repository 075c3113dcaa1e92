"""Buggy: d2l's hand-written sgd (which divides by batch_size) fed a *mean* loss.

Provenance: d2l.ai "Linear Regression Implementation from Scratch" (0.17 edition,
    https://d2l.ai/chapter_linear-networks/linear-regression-scratch.html) and the
    questions on its discussion forum (https://discuss.d2l.ai, the chapter's
    "Discussions" thread) from readers who call `l.mean().backward()` and keep
    `sgd(params, lr, batch_size)`, then ask why training is so slow.
Changes: our own rendition (see d2l_linreg_scratch.py for the clean version); fixed
    seeds; 3 epochs, batch 10, lr 0.03 as in the book. The one change from the clean
    script is the mean instead of the sum before backward.
Expected: buggy - the mean loss already divides by the batch size and the update
    divides again (effective lr 0.03/10). steptrace should report `double_averaging`.
"""
import random

import torch

random.seed(0)
torch.manual_seed(0)


def synthetic_data(w, b, num_examples):
    X = torch.normal(0, 1, (num_examples, len(w)))
    y = torch.matmul(X, w) + b
    y += torch.normal(0, 0.01, y.shape)
    return X, y.reshape((-1, 1))


true_w = torch.tensor([2, -3.4])
true_b = 4.2
features, labels = synthetic_data(true_w, true_b, 1000)


def data_iter(batch_size, features, labels):
    num_examples = len(features)
    indices = list(range(num_examples))
    random.shuffle(indices)
    for i in range(0, num_examples, batch_size):
        batch_indices = torch.tensor(indices[i: min(i + batch_size, num_examples)])
        yield features[batch_indices], labels[batch_indices]


def linreg(X, w, b):
    return torch.matmul(X, w) + b


def squared_loss(y_hat, y):
    return (y_hat - y.reshape(y_hat.shape)) ** 2 / 2


def sgd(params, lr, batch_size):
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


batch_size = 10
w = torch.normal(0, 0.01, size=(2, 1), requires_grad=True)
b = torch.zeros(1, requires_grad=True)
lr = 0.03
for epoch in range(3):
    for X, y in data_iter(batch_size, features, labels):
        l = squared_loss(linreg(X, w, b), y)
        l.mean().backward()          # BUG: mean here, and sgd divides by batch_size again
        sgd([w, b], lr, batch_size)
    with torch.no_grad():
        train_l = squared_loss(linreg(features, w, b), labels)
        print(f"epoch {epoch + 1}, loss {float(train_l.mean()):f}")
