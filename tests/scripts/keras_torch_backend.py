"""Keras on its torch backend, then a hand-written PyTorch loop, in one script.

Run under ``steptrace run`` with ``KERAS_BACKEND=torch``: both the Keras hook and the
PyTorch hook are active. The Keras ``fit`` (a sigmoid classifier, 2 epochs of 3 batches)
must be traced once, by the Keras hook, and not a second time as a raw torch loop (Keras's
own ``backward`` and in-place updates); the torch loop after it (4 steps of SGD) must
still be traced by the PyTorch hook.
"""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

assert keras.backend.backend() == "torch", keras.backend.backend()

rng = np.random.default_rng(0)
x = rng.normal(size=(24, 3)).astype("float32")
y = (x @ np.array([1.0, -2.0, 0.5]) > 0).astype("float32")

keras.utils.set_random_seed(1)
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Activation("relu"),
                          keras.layers.Dense(1), keras.layers.Activation("sigmoid")])
model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
print("keras loss", round(history.history["loss"][-1], 6))

w = torch.zeros(3, 1, requires_grad=True)
opt = torch.optim.SGD([w], lr=0.1)
xt, yt = torch.from_numpy(x), torch.from_numpy(y)[:, None]
for _ in range(4):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(xt @ w, yt)
    loss.backward()
    opt.step()
print("torch loss", round(loss.item(), 6))
