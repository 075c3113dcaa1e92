"""Clean: Keras Sequential with Dense + Activation layers, Dropout(0), Huber, SGD Nesterov.

Provenance: in the style of the Keras "The Sequential model" guide
    (https://keras.io/guides/sequential_model/) and keras.io's regression examples.
Changes: our own script; synthetic regression (70 rows, 3 features), Dense(8) +
    Activation("elu") + Dropout(0.0) + Dense(4) + Activation("softplus") + Dense(1),
    Huber(delta=0.5), SGD(0.05, momentum=0.9, nesterov=True), batch 16 (does not divide
    the 56 training rows), validation_split=0.2, shuffle=True, 2 epochs. Seeds fixed.
Expected: clean - passed, nothing "cannot check".
"""
import numpy as np
import keras

keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(70, 3)).astype("float32")
y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32") + 0.3).astype("float32")

model = keras.Sequential([
    keras.Input((3,)),
    keras.layers.Dense(8), keras.layers.Activation("elu"),
    keras.layers.Dropout(0.0),
    keras.layers.Dense(4), keras.layers.Activation("softplus"),
    keras.layers.Dense(1),
])
model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
              loss=keras.losses.Huber(delta=0.5), metrics=["mae"])
hist = model.fit(x, y, batch_size=16, epochs=2, validation_split=0.2, shuffle=True, verbose=0)
print("final loss", round(float(hist.history["loss"][-1]), 4))
