"""Clean: Keras activation *layers* (ReLU, LeakyReLU, Softmax) instead of activation=, Adam.

Provenance: in the style of keras.io's examples that write `layers.ReLU()` /
    `layers.LeakyReLU()` / `layers.Softmax()` as layers of their own
    (https://keras.io/api/layers/activation_layers/).
Changes: our own script; synthetic 3-class data (60 rows, 4 features), Dense(8) + ReLU() +
    Dense(6) + LeakyReLU(negative_slope=0.1) + Dense(3) + Softmax(), loss
    "categorical_crossentropy" (a string), optimizer "adam", batch 16 (does not divide 60),
    2 epochs. Seeds fixed.
Expected: clean - passed, nothing "cannot check".
"""
import numpy as np
import keras

keras.utils.set_random_seed(6)
rng = np.random.default_rng(6)
labels = rng.integers(0, 3, 60)
x = (rng.normal(size=(60, 4)) + np.eye(4)[labels]).astype("float32")
y = keras.utils.to_categorical(labels, 3)

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.ReLU(),
                          keras.layers.Dense(6), keras.layers.LeakyReLU(negative_slope=0.1),
                          keras.layers.Dense(3), keras.layers.Softmax()])
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
hist = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
print("final loss", round(float(hist.history["loss"][-1]), 4))
