"""The PyTorch scenarios' training loops, written as their users wrote them (seeds 000, 001, 003, 004).

Each ``run_*`` takes ``ctx``, a context manager factory (``trace_torch`` or a no-op), runs
the loop unchanged inside it and returns ``(tracer or None, final values)`` so a test can
compare a traced run with an untraced one bit for bit.
"""
import contextlib
import random

import numpy as np
import torch
import torch.utils.data as Data
from torch.utils.data import DataLoader, TensorDataset

S1_INPUTS = [[73, 67, 43], [91, 88, 64], [87, 134, 58], [102, 43, 37], [69, 96, 70], [74, 66, 43],
             [91, 87, 65], [88, 134, 59], [101, 44, 37], [68, 96, 71], [73, 66, 44], [92, 87, 64],
             [87, 135, 57], [103, 43, 36], [68, 97, 70]]
S1_TARGETS = [[56, 70], [81, 101], [119, 133], [22, 37], [103, 119], [57, 69], [80, 102], [118, 132],
              [21, 38], [104, 118], [57, 69], [82, 100], [118, 134], [20, 38], [102, 120]]


def null(**kwargs):
    """A stand-in for trace_torch that traces nothing."""
    return contextlib.nullcontext()


def _enter(ctx, **kwargs):
    return ctx(**kwargs)


def run_s0t(ctx, epochs=3, zero_grad=True, **kwargs):
    """Seed 000, PyTorch variant: nn.Sequential(Linear(1, 1)), SGD(0.02), MSELoss, batch 16, shuffle."""
    np.random.seed(42)
    observations = 1000
    x = np.random.uniform(low=-10, high=10, size=(observations, 1))
    np.random.seed(42)
    noise = np.random.uniform(-1, 1, (observations, 1))
    targets = 13 * x + 2 + noise
    x_tensor = torch.from_numpy(x).float()
    y_tensor = torch.from_numpy(targets).float()
    train_data = TensorDataset(x_tensor, y_tensor)
    device = "cpu"
    torch.manual_seed(42)

    def init_weights(m):
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.uniform_(m.weight, a=-0.1, b=0.1)
            torch.nn.init.uniform_(m.bias, a=-0.1, b=0.1)

    model = torch.nn.Sequential(torch.nn.Linear(1, 1)).to(device)
    model.apply(init_weights)
    lr = 0.02
    loss_fn = torch.nn.MSELoss(reduction="mean")
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    train_loader = DataLoader(train_data, batch_size=16, shuffle=True)

    def make_train_step(model, optimizer, loss_fn):
        def train_step(x, y):
            model.train()
            yhat = model(x)
            loss = loss_fn(y, yhat)
            loss.backward()
            optimizer.step()
            if zero_grad:
                optimizer.zero_grad()
            return loss.item()
        return train_step

    train_step = make_train_step(model, optimizer, loss_fn)
    losses = []
    with _enter(ctx, **kwargs) as tr:
        for epoch in range(epochs):
            batch_loss = 0
            for x_batch, y_batch in train_loader:
                x_batch = x_batch.to(device)
                y_batch = y_batch.to(device)
                loss = train_step(x_batch, y_batch)
                batch_loss = batch_loss + loss
            epoch_loss = batch_loss / 63
            losses.append(epoch_loss)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return tr, {"state": state, "losses": losses}


def run_s1(ctx, epochs=50, **kwargs):
    """Seed 001: raw tensors w, b; X @ w.t() + b; hand-written MSE; batch 3, shuffle; no optimizer."""
    inputs = torch.from_numpy(np.array(S1_INPUTS, dtype="float32"))
    targets = torch.from_numpy(np.array(S1_TARGETS, dtype="float32"))
    torch.manual_seed(7)
    dataset = TensorDataset(inputs, targets)
    batch_size = 3
    train_loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    w = torch.randn(2, 3, requires_grad=True)
    b = torch.randn(2, requires_grad=True)

    def model(X):
        return X @ w.t() + b

    def mse_loss(predictions, targets):
        difference = predictions - targets
        return torch.sum(difference * difference) / difference.numel()

    with _enter(ctx, **kwargs) as tr:
        for i in range(epochs):
            for x, y in train_loader:
                preds = model(x)
                loss = mse_loss(preds, y)
                loss.backward()
                with torch.no_grad():
                    w -= w.grad * 1e-6
                    b -= b.grad * 1e-6
                    w.grad.zero_()
                    b.grad.zero_()
    return tr, {"w": w.detach().clone(), "b": b.detach().clone(), "inputs": inputs, "targets": targets}


def run_s3(ctx, num_epochs=5, **kwargs):
    """Seed 003 (d2l): batches from a Python generator, squared_loss summed, sgd divides by batch_size."""
    torch.manual_seed(0)
    random.seed(0)

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

    batch_size = 10
    w = torch.normal(0, 0.01, size=(2, 1), requires_grad=True)
    b = torch.zeros(1, requires_grad=True)

    def linreg(X, w, b):
        return torch.matmul(X, w) + b

    def squared_loss(y_hat, y):
        return (y_hat - y.reshape(y_hat.shape)) ** 2 / 2

    def sgd(params, lr, batch_size):
        with torch.no_grad():
            for param in params:
                param -= lr * param.grad / batch_size
                param.grad.zero_()

    lr = 0.03
    net = linreg
    loss = squared_loss
    epoch_losses = []
    with _enter(ctx, **kwargs) as tr:
        for epoch in range(num_epochs):
            for X, y in data_iter(batch_size, features, labels):
                l = loss(net(X, w, b), y)
                l.sum().backward()
                sgd([w, b], lr, batch_size)
            with torch.no_grad():
                train_l = loss(net(features, w, b), labels)
                epoch_losses.append(float(train_l.mean()))
    return tr, {"w": w.detach().clone(), "b": b.detach().clone(), "features": features, "labels": labels,
                "epoch_losses": epoch_losses}


def _s4_train(net, train_iter, loss, num_epochs, batch_size, params, lr, trainfeatures, trainlabels):
    def SGD(params, lr, batch_size):
        for param in params:
            param.data -= lr * param.grad / batch_size

    train_loss = []
    for epoch in range(num_epochs):
        for X, y in train_iter:
            y_hat = net(X)
            l = loss(y_hat, y)
            if params is not None and params[0].grad is not None:
                for param in params:
                    param.grad.data.zero_()
            l.backward()
            SGD(params, lr, batch_size)
        train_loss.append((loss(net(trainfeatures), trainlabels.view(-1, 1))).item())
    return train_loss


def run_s4_regression(ctx, num_examples=10000, n_train=7000, num_inputs=500, num_epochs=2, **kwargs):
    """Seed 004 regression: 500 -> 256 -> 1 MLP of raw tensors, MSELoss, SGD dividing by batch_size."""
    np.random.seed(4)
    torch.manual_seed(4)
    true_w = torch.ones(num_inputs, 1) * 0.0056
    true_b = 0.028
    features = torch.tensor(np.random.normal(0, 1, (num_examples, num_inputs)), dtype=torch.float)
    labels = torch.mm(features, true_w) + true_b
    labels += torch.tensor(np.random.normal(0, 0.01, size=labels.size()), dtype=torch.float)
    trainfeatures = features[:n_train]
    trainlabels = labels[:n_train]
    batch_size = 50

    def load_array(data_arrays, batch_size, is_train=True):
        dataset = Data.TensorDataset(*data_arrays)
        return Data.DataLoader(dataset, batch_size, shuffle=is_train, num_workers=0)

    train_iter = load_array([trainfeatures, trainlabels], batch_size)
    num_hiddens, num_outputs = 256, 1
    W1 = torch.tensor(np.random.normal(0, 0.01, (num_inputs, num_hiddens)), dtype=torch.float32)
    b1 = torch.zeros(1, dtype=torch.float32)
    W2 = torch.tensor(np.random.normal(0, 0.01, (num_hiddens, num_outputs)), dtype=torch.float32)
    b2 = torch.zeros(1, dtype=torch.float32)
    params = [W1, b1, W2, b2]
    for param in params:
        param.requires_grad_(requires_grad=True)

    def relu(x):
        x = torch.max(x, torch.tensor(0.0))
        return x

    def net(X):
        X = X.view((-1, num_inputs))
        H = relu(torch.matmul(X, W1) + b1)
        return torch.matmul(H, W2) + b2

    loss = torch.nn.MSELoss()
    lr = 0.01
    with _enter(ctx, **kwargs) as tr:
        train_loss = _s4_train(net, train_iter, loss, num_epochs, batch_size, params, lr,
                               trainfeatures, trainlabels)
    return tr, {"W1": W1.detach().clone(), "b1": b1.detach().clone(), "W2": W2.detach().clone(),
                "b2": b2.detach().clone(), "train_loss": train_loss}


def run_s4_multiclass(ctx, n=300, num_epochs=2, **kwargs):
    """Seed 004 multi-class, MNIST-shaped (784 -> 256 -> 10) with the page's
    ``params = [W1, b2, W2, b2]`` bug, on ``n`` synthetic rows (no download)."""
    np.random.seed(5)
    torch.manual_seed(5)
    images = torch.rand(n, 1, 28, 28)
    classes = torch.randint(0, 10, (n,))
    train_dataset = TensorDataset(images, classes)
    batch_size = 32
    train_iter = torch.utils.data.DataLoader(train_dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    num_inputs, num_hiddens, num_outputs = 784, 256, 10
    W1 = torch.tensor(np.random.normal(0, 0.01, (num_inputs, num_hiddens)), dtype=torch.float32)
    b1 = torch.zeros(1, dtype=torch.float32)
    W2 = torch.tensor(np.random.normal(0, 0.01, (num_hiddens, num_outputs)), dtype=torch.float32)
    b2 = torch.zeros(1, dtype=torch.float32)
    params = [W1, b2, W2, b2]
    for param in params:
        param.requires_grad_(requires_grad=True)

    def relu(x):
        x = torch.max(x, torch.tensor(0.0))
        return x

    def net(X):
        X = X.reshape((-1, num_inputs))
        H = relu(X @ W1 + b1)
        return (H @ W2 + b2)

    loss = torch.nn.CrossEntropyLoss()

    def SGD(paras, lr, batch_size):
        for param in params:
            param.data -= lr * param.grad / batch_size

    def train(net, train_iter, loss, num_epochs, batch_size, params=None, lr=None, optimizer=None):
        train_loss = []
        for epoch in range(num_epochs):
            train_l_sum, n_seen = 0.0, 0.0
            for X, y in train_iter:
                y_hat = net(X)
                l = loss(y_hat, y)
                if optimizer is not None:
                    optimizer.zero_grad()
                elif params is not None and params[0].grad is not None:
                    for param in params:
                        param.grad.data.zero_()
                l.backward()
                if optimizer is None:
                    SGD(params, lr, batch_size)
                else:
                    optimizer.step()
                train_l_sum += l.item() * y.shape[0]
                n_seen += y.shape[0]
            train_loss.append(train_l_sum / n_seen)
        return train_loss

    lr = 0.01
    with _enter(ctx, **kwargs) as tr:
        train_loss = train(net, train_iter, loss, num_epochs, batch_size, params, lr)
    return tr, {"W1": W1.detach().clone(), "b1": b1.detach().clone(), "W2": W2.detach().clone(),
                "b2": b2.detach().clone(), "train_loss": train_loss}
