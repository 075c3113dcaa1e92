"""MNIST logistic regression, refactored step by step with torch.nn (several loops).

Provenance: PyTorch tutorial "What is torch.nn really?" by Jeremy Howard,
    https://pytorch.org/tutorials/beginner/nn_tutorial.html
    Sections rendered here, each a training loop of its own as in the tutorial:
    1. "Neural net from scratch (without torch.nn)": hand-written log_softmax + nll,
       manual update under no_grad, `.grad.zero_()`;
    2. "Refactor using nn.Module": Mnist_Logistic with nn.Parameter, manual update,
       model.zero_grad();
    3. "Refactor using nn.Linear";
    4. "Refactor using torch.optim" (get_model() returns model and optim.SGD);
    5. "Refactor using Dataset" (TensorDataset slices);
    6. "Refactor using DataLoader";
    7. "Add validation" (shuffled train loader, model.train()/model.eval());
    8. "Create fit() and get_data()" (loss_batch, fit, validation loss per epoch);
    9. "Switch to CNN" (Mnist_CNN, SGD with momentum 0.9).
    Between 1 and 2 the tutorial switches to F.cross_entropy without training (shown).
Changes: our own rendition. No download: MNIST is replaced by synthetic MNIST-shaped
    data (784 features in [0, 1], mostly zeros like the digit images, 10 classes
    labelled by a fixed random linear "teacher"), 384 training rows and 256 validation
    rows instead of 50,000 / 10,000 (so 6 batches of 64 per epoch). Epochs (2),
    batch size (64) and learning rates (0.5; 0.1 for the CNN) are the tutorial's. The
    IPython debugger lines, the matplotlib image, the "Using your GPU" and the
    nn.Sequential/WrappedDataLoader sections are left out.
Expected: clean - no FAILED verdict on any of the 9 runs (the CNN's run may be
    INCOMPLETE: convolution is not modelled). Issue 16: exporting these runs took
    12 minutes with the default workbook.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn, optim
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)

# ------------------------------------------------------------ data (synthetic MNIST)
def make_mnist_like(n_train=384, n_valid=256, seed=0):
    """Arrays shaped like the tutorial's pickled MNIST: (n, 784) float32 in [0, 1], int labels."""
    rng = np.random.default_rng(seed)
    n = n_train + n_valid
    ink = rng.random((n, 784)) < 0.19                      # ~19% of MNIST pixels are non-zero
    x = np.where(ink, rng.uniform(0.0, 1.0, (n, 784)), 0.0).astype(np.float32)
    teacher = rng.normal(0.0, 1.0, (784, 10))
    y = np.argmax(x @ teacher + rng.gumbel(size=(n, 10)), axis=1).astype(np.int64)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


x_train, y_train, x_valid, y_valid = map(torch.tensor, make_mnist_like())
n, c = x_train.shape
print(x_train.shape, y_train.min().item(), y_train.max().item())

# ------------------------------------------------- 1. neural net from scratch
weights = torch.randn(784, 10) / math.sqrt(784)            # Xavier initialisation
weights.requires_grad_()
bias = torch.zeros(10, requires_grad=True)


def log_softmax(x):
    return x - x.exp().sum(-1).log().unsqueeze(-1)


def model(xb):
    return log_softmax(xb @ weights + bias)


def nll(input, target):
    return -input[range(target.shape[0]), target].mean()


loss_func = nll


def accuracy(out, yb):
    preds = torch.argmax(out, dim=1)
    return (preds == yb).float().mean()


bs = 64
xb, yb = x_train[0:bs], y_train[0:bs]
preds = model(xb)
print(preds[0].shape, loss_func(preds, yb).item(), accuracy(preds, yb).item())

lr = 0.5
epochs = 2
for epoch in range(epochs):
    for i in range((n - 1) // bs + 1):
        start_i = i * bs
        end_i = start_i + bs
        xb = x_train[start_i:end_i]
        yb = y_train[start_i:end_i]
        pred = model(xb)
        loss = loss_func(pred, yb)

        loss.backward()
        with torch.no_grad():
            weights -= weights.grad * lr
            bias -= bias.grad * lr
            weights.grad.zero_()
            bias.grad.zero_()

print("from scratch:", round(loss_func(model(xb), yb).item(), 5), round(accuracy(model(xb), yb).item(), 5))

# ------------------------------------------- using torch.nn.functional (no training)
loss_func = F.cross_entropy


def model(xb):
    return xb @ weights + bias


print("F.cross_entropy:", round(loss_func(model(xb), yb).item(), 5), round(accuracy(model(xb), yb).item(), 5))


# ------------------------------------------------------ 2. refactor using nn.Module
class Mnist_Logistic(nn.Module):
    def __init__(self):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(784, 10) / math.sqrt(784))
        self.bias = nn.Parameter(torch.zeros(10))

    def forward(self, xb):
        return xb @ self.weights + self.bias


model = Mnist_Logistic()
print("before fit:", round(loss_func(model(xb), yb).item(), 5))


def fit():
    for epoch in range(epochs):
        for i in range((n - 1) // bs + 1):
            start_i = i * bs
            end_i = start_i + bs
            xb = x_train[start_i:end_i]
            yb = y_train[start_i:end_i]
            pred = model(xb)
            loss = loss_func(pred, yb)

            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= p.grad * lr
                model.zero_grad()


fit()
print("nn.Module:", round(loss_func(model(xb), yb).item(), 5))


# ------------------------------------------------------ 3. refactor using nn.Linear
class Mnist_Logistic(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(784, 10)

    def forward(self, xb):
        return self.lin(xb)


model = Mnist_Logistic()
fit()
print("nn.Linear:", round(loss_func(model(xb), yb).item(), 5))


# --------------------------------------------------- 4. refactor using torch.optim
def get_model():
    model = Mnist_Logistic()
    return model, optim.SGD(model.parameters(), lr=lr)


model, opt = get_model()
for epoch in range(epochs):
    for i in range((n - 1) // bs + 1):
        start_i = i * bs
        end_i = start_i + bs
        xb = x_train[start_i:end_i]
        yb = y_train[start_i:end_i]
        pred = model(xb)
        loss = loss_func(pred, yb)

        loss.backward()
        opt.step()
        opt.zero_grad()
print("optim:", round(loss_func(model(xb), yb).item(), 5))

# ------------------------------------------------------ 5. refactor using Dataset
train_ds = TensorDataset(x_train, y_train)
model, opt = get_model()
for epoch in range(epochs):
    for i in range((n - 1) // bs + 1):
        xb, yb = train_ds[i * bs: i * bs + bs]
        pred = model(xb)
        loss = loss_func(pred, yb)

        loss.backward()
        opt.step()
        opt.zero_grad()
print("Dataset:", round(loss_func(model(xb), yb).item(), 5))

# --------------------------------------------------- 6. refactor using DataLoader
train_dl = DataLoader(train_ds, batch_size=bs)
model, opt = get_model()
for epoch in range(epochs):
    for xb, yb in train_dl:
        pred = model(xb)
        loss = loss_func(pred, yb)

        loss.backward()
        opt.step()
        opt.zero_grad()
print("DataLoader:", round(loss_func(model(xb), yb).item(), 5))

# ----------------------------------------------------------- 7. add validation
train_ds = TensorDataset(x_train, y_train)
train_dl = DataLoader(train_ds, batch_size=bs, shuffle=True)
valid_ds = TensorDataset(x_valid, y_valid)
valid_dl = DataLoader(valid_ds, batch_size=bs * 2)

model, opt = get_model()
for epoch in range(epochs):
    model.train()
    for xb, yb in train_dl:
        pred = model(xb)
        loss = loss_func(pred, yb)

        loss.backward()
        opt.step()
        opt.zero_grad()

    model.eval()
    with torch.no_grad():
        valid_loss = sum(loss_func(model(xb), yb) for xb, yb in valid_dl)
    print(epoch, round((valid_loss / len(valid_dl)).item(), 5))


# -------------------------------------------------- 8. create fit() and get_data()
def loss_batch(model, loss_func, xb, yb, opt=None):
    loss = loss_func(model(xb), yb)

    if opt is not None:
        loss.backward()
        opt.step()
        opt.zero_grad()

    return loss.item(), len(xb)


def fit(epochs, model, loss_func, opt, train_dl, valid_dl):
    for epoch in range(epochs):
        model.train()
        for xb, yb in train_dl:
            loss_batch(model, loss_func, xb, yb, opt)

        model.eval()
        with torch.no_grad():
            losses, nums = zip(*[loss_batch(model, loss_func, xb, yb) for xb, yb in valid_dl])
        val_loss = np.sum(np.multiply(losses, nums)) / np.sum(nums)
        print(epoch, round(float(val_loss), 5))


def get_data(train_ds, valid_ds, bs):
    return (
        DataLoader(train_ds, batch_size=bs, shuffle=True),
        DataLoader(valid_ds, batch_size=bs * 2),
    )


train_dl, valid_dl = get_data(train_ds, valid_ds, bs)
model, opt = get_model()
fit(epochs, model, loss_func, opt, train_dl, valid_dl)


# ------------------------------------------------------------ 9. switch to CNN
class Mnist_CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 16, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(16, 10, kernel_size=3, stride=2, padding=1)

    def forward(self, xb):
        xb = xb.view(-1, 1, 28, 28)
        xb = F.relu(self.conv1(xb))
        xb = F.relu(self.conv2(xb))
        xb = F.relu(self.conv3(xb))
        xb = F.avg_pool2d(xb, 4)
        return xb.view(-1, xb.size(1))


lr = 0.1
model = Mnist_CNN()
opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
fit(epochs, model, loss_func, opt, train_dl, valid_dl)
