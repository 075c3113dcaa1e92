"""Buggy: NumPy logistic regression, the model and the loss written as Python functions.

Provenance: in the style of Andrew Ng's "Logistic Regression with a Neural Network mindset"
    assignment (propagate/optimize with sigmoid and the cross-entropy cost, w and b = 0.0)
    and many blog posts in its image.
Changes: our own script; synthetic data (100 rows, 3 features), gradient descent lr 0.5,
    40 iterations, full batch. Run with:
    steptrace run --numpy-params w,b --numpy-model model --numpy-loss cost SCRIPT
Expected: buggy - the bias moves up the gradient (wrong sign), seed fixed:
    steptrace should fail the update of b.
"""
import numpy as np

np.random.seed(0)
X = np.random.randn(100, 3)
y = (X @ np.array([1.0, -2.0, 0.5]) + 0.2 > 0).astype(float).reshape(-1, 1)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def model(w, b, X):
    return sigmoid(X @ w + b)


def cost(A, y):
    return -np.mean(y * np.log(A) + (1 - y) * np.log(1 - A))


w = np.zeros((3, 1))
b = 0.0
lr = 0.5
m = X.shape[0]
for i in range(40):
    A = model(w, b, X)
    loss = cost(A, y)
    dw = X.T @ (A - y) / m
    db = np.sum(A - y) / m
    w = w - lr * dw
    b = b + lr * db                    # BUG: wrong sign
print("final cost", round(float(loss), 6))
