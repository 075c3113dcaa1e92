"""Clean: NumPy softmax regression with the stable softmax (max subtracted), mini-batches.

Provenance: in the style of CS231n's softmax classifier notes
    (https://cs231n.github.io/linear-classify/#softmax: "shift the values so that the
    highest number is 0") and "softmax regression from scratch" posts.
Changes: our own script; synthetic 3-class data (90 rows, 4 features), W (4, 3) and b (3,),
    batch 30 in order, lr 0.5, 3 epochs. Run with:
    steptrace run --numpy-params W,b --numpy-model model --numpy-loss loss_fn
    --inputs X --targets Y --predictions probs SCRIPT
Expected: clean - passed, nothing "cannot check". seed fixed.
"""
import numpy as np

np.random.seed(1)
labels = np.random.randint(0, 3, 90)
X = np.random.randn(90, 4) + np.eye(4)[labels] * 2
Y = np.eye(3)[labels]


def softmax(z):
    e = np.exp(z - np.max(z, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


def model(W, b, X):
    return softmax(X @ W + b)


def loss_fn(p, Y):
    return -np.sum(Y * np.log(p)) / p.shape[0]


W = np.zeros((4, 3))
b = np.zeros(3)
lr = 0.5
for epoch in range(3):
    for i in range(0, 90, 30):
        xb, yb = X[i:i + 30], Y[i:i + 30]
        probs = model(W, b, xb)
        loss = loss_fn(probs, yb)
        g = (probs - yb) / len(xb)
        W = W - lr * xb.T @ g
        b = b - lr * g.sum(axis=0)
print("final loss", round(float(loss), 6))
