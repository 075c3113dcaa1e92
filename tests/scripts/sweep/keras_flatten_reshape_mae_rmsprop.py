"""Clean: Keras Flatten and Reshape around Dense layers, MeanAbsoluteError, RMSprop.

Provenance: in the style of Keras's "Basic regression" tutorial
    (https://www.tensorflow.org/tutorials/keras/regression: mean_absolute_error loss)
    with Flatten/Reshape layers from the layer guides.
Changes: our own script; synthetic inputs of shape (2, 3) per row (60 rows), Flatten +
    Dense(6, tanh) + Reshape((2, 3)) + Flatten + Dense(1), MeanAbsoluteError, RMSprop(1e-2),
    batch 8 (does not divide 60), shuffle=True, 2 epochs. Seeds fixed.
Expected: clean - passed, nothing "cannot check".
"""
import numpy as np
import keras

keras.utils.set_random_seed(1)
rng = np.random.default_rng(1)
x = rng.normal(size=(60, 2, 3)).astype("float32")
y = (x[:, 0, :].sum(axis=1, keepdims=True) - x[:, 1, 0:1]).astype("float32")

model = keras.Sequential([
    keras.Input((2, 3)),
    keras.layers.Flatten(),
    keras.layers.Dense(6, activation="tanh"),
    keras.layers.Reshape((2, 3)),
    keras.layers.Flatten(),
    keras.layers.Dense(1),
])
model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-2),
              loss=keras.losses.MeanAbsoluteError())
hist = model.fit(x, y, batch_size=8, epochs=2, shuffle=True, verbose=0)
print("final loss", round(float(hist.history["loss"][-1]), 4))
