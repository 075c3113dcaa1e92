"""Clean: a NumPy MLP classifier with a guarded log in its loss, shuffled mini-batches, in-place updates.

Provenance: in the style of "neural network from scratch" blog posts that write the
    cross-entropy as `-np.mean(y * np.log(p + 1e-12) + ...)` to keep log(0) away and
    backpropagate `(p - y) / n` by hand (e.g. the CS231n case study,
    https://cs231n.github.io/neural-networks-case-study/), with np.where for a leaky ReLU.
Changes: our own script; synthetic XOR-like data (60 rows, 3 features), W1 (3, 6), b1,
    W2 (6, 1), b2, lr 0.5, batches of 20 from np.random.permutation, `W -= lr * dW`,
    3 epochs. Run with:
    steptrace run --numpy-params W1,b1,W2,b2 --numpy-model forward --numpy-loss bce
    --inputs X --targets y --predictions p SCRIPT
Expected: clean - passed, nothing "cannot check" (the guard is not a bug). seed fixed.
"""
import numpy as np

np.random.seed(3)
X = np.random.randn(60, 3)
y = (X[:, :1] * X[:, 1:2] > 0).astype(float)


def forward(W1, b1, W2, b2, X):
    z = X @ W1 + b1
    h = np.where(z > 0, z, 0.01 * z)
    return 1.0 / (1.0 + np.exp(-(h @ W2 + b2)))


def bce(p, y):
    return -np.mean(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12))


W1 = np.random.randn(3, 6) * 0.5
b1 = np.zeros(6)
W2 = np.random.randn(6, 1) * 0.5
b2 = np.zeros(1)
lr = 0.5
for epoch in range(3):
    perm = np.random.permutation(60)
    for i in range(0, 60, 20):
        idx = perm[i:i + 20]
        xb, yb = X[idx], y[idx]
        z = xb @ W1 + b1
        h = np.where(z > 0, z, 0.01 * z)
        p = 1.0 / (1.0 + np.exp(-(h @ W2 + b2)))
        loss = bce(p, yb)
        d = (p - yb) / len(xb)
        dW2 = h.T @ d
        db2 = d.sum(0)
        dh = d @ W2.T * np.where(z > 0, 1.0, 0.01)
        dW1 = xb.T @ dh
        db1 = dh.sum(0)
        W1 -= lr * dW1
        b1 -= lr * db1
        W2 -= lr * dW2
        b2 -= lr * db2
print("final loss", round(float(loss), 6))
