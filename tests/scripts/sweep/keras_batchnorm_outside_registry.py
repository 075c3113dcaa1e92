"""Clean, outside the registry: a Keras Sequential with BatchNormalization (not modelled).

Provenance: in the style of keras.io's examples that put BatchNormalization between
    Dense layers (https://keras.io/api/layers/normalization_layers/batch_normalization/).
Changes: our own script; synthetic regression (48 rows, 3 features), Dense(8) +
    BatchNormalization + Activation("relu") + Dense(1), mse, Adam, batch 16, 2 epochs.
Expected: clean - but BatchNormalization is outside the registry: an explicit "cannot
    check" naming it (never FAILED, never a crash, never a silent pass). seed fixed.
"""
import numpy as np
import keras

keras.utils.set_random_seed(5)
x = np.random.default_rng(5).normal(size=(48, 3)).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8), keras.layers.BatchNormalization(),
                          keras.layers.Activation("relu"), keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse")
hist = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
print("final loss", round(float(hist.history["loss"][-1]), 4))
