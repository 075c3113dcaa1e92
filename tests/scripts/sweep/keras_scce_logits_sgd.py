"""Clean: Keras SparseCategoricalCrossentropy(from_logits=True) with plain SGD.

Provenance: in the style of TensorFlow's "TensorFlow 2 quickstart for beginners"
    (https://www.tensorflow.org/tutorials/quickstart/beginner: Flatten, Dense(relu),
    Dropout, Dense(10) logits, SparseCategoricalCrossentropy(from_logits=True)).
Changes: our own script; synthetic 28-pixel "images" of shape (4, 7) (64 rows, 5 classes),
    Dropout rate 0.0 (a rate would be random), SGD(0.1), batch 16, 2 epochs. Seeds fixed.
Expected: clean - passed, nothing "cannot check".
"""
import numpy as np
import keras

keras.utils.set_random_seed(4)
rng = np.random.default_rng(4)
labels = rng.integers(0, 5, 64)
x = rng.random((64, 4, 7)).astype("float32")
x[np.arange(64), labels % 4, labels] += 1.0

model = keras.Sequential([
    keras.Input((4, 7)),
    keras.layers.Flatten(),
    keras.layers.Dense(16, activation="relu"),
    keras.layers.Dropout(0.0),
    keras.layers.Dense(5),
])
model.compile(optimizer=keras.optimizers.SGD(0.1),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
hist = model.fit(x, labels, batch_size=16, epochs=2, verbose=0)
print("final loss", round(float(hist.history["loss"][-1]), 4))
