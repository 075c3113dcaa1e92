"""Clean: a 2-layer NumPy MLP (tanh hidden layer) for regression, backprop by hand.

Provenance: in the style of "neural network from scratch in NumPy" posts (e.g.
    https://cs231n.github.io/neural-networks-case-study/ and Karpathy's hacker's guide):
    forward, mean squared error, manual backward pass, in-place parameter updates.
Changes: our own script; synthetic data (64 rows, 2 features), W1 (2, 8), b1 (8,),
    W2 (8, 1), b2 (1,), lr 0.1, 30 full-batch iterations. Run with:
    steptrace run --numpy-params W1,b1,W2,b2 --numpy-model forward --numpy-loss mse SCRIPT
Expected: clean - passed, nothing "cannot check". seed fixed.
"""
import numpy as np

np.random.seed(2)
x = np.random.randn(64, 2)
y = np.sin(x[:, :1]) + 0.5 * x[:, 1:]


def forward(W1, b1, W2, b2, x):
    return np.tanh(x @ W1 + b1) @ W2 + b2


def mse(out, y):
    return np.mean((out - y) ** 2)


W1 = np.random.randn(2, 8) * 0.5
b1 = np.zeros(8)
W2 = np.random.randn(8, 1) * 0.5
b2 = np.zeros(1)
lr = 0.1
n = len(x)
for it in range(30):
    h = np.tanh(x @ W1 + b1)
    out = h @ W2 + b2
    loss = mse(out, y)
    d_out = 2 * (out - y) / n
    dW2 = h.T @ d_out
    db2 = d_out.sum(axis=0)
    d_h = (d_out @ W2.T) * (1 - h ** 2)
    dW1 = x.T @ d_h
    db1 = d_h.sum(axis=0)
    W2 = W2 - lr * dW2
    b2 = b2 - lr * db2
    W1 = W1 - lr * dW1
    b1 = b1 - lr * db1
print("final loss", round(float(loss), 6))
