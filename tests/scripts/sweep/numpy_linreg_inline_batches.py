"""Clean: NumPy linear regression with 1-D weights, batches cut inline with a shuffled index array.

Provenance: in the style of "mini-batch gradient descent from scratch" posts (e.g.
    https://machinelearningmastery.com/gradient-descent-for-machine-learning/ and their
    NumPy renditions): `np.random.shuffle(indices)`, then `X[batch_idx]` passed straight
    to the prediction function, a cost of sum of squares over 2m.
Changes: our own script; synthetic data (64 rows, 3 features), w of shape (3,), b = 0.0,
    lr 0.1, batches of 16, 3 epochs. Run with:
    steptrace run --numpy-params w,b --numpy-model predict --numpy-loss cost
    --inputs X --targets y --predictions y_hat SCRIPT
Expected: clean - passed, nothing "cannot check". seed fixed.
"""
import numpy as np

np.random.seed(4)
X = np.random.randn(64, 3)
y = X @ np.array([1.5, -2.0, 0.3]) + 0.7 + 0.01 * np.random.randn(64)


def predict(w, b, X):
    return np.dot(X, w) + b


def cost(y_hat, y):
    return np.sum((y_hat - y) ** 2) / (2 * len(y))


w = np.zeros(3)
b = 0.0
lr = 0.1
indices = np.arange(64)
for epoch in range(3):
    np.random.shuffle(indices)
    for start in range(0, 64, 16):
        batch_idx = indices[start:start + 16]
        y_hat = predict(w, b, X[batch_idx])
        loss = cost(y_hat, y[batch_idx])
        err = y_hat - y[batch_idx]
        w = w - lr * X[batch_idx].T.dot(err) / len(batch_idx)
        b = b - lr * err.mean()
print("final cost", round(float(loss), 8))
