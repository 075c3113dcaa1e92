"""Clean: Keras binary classifier on logits: BinaryCrossentropy(from_logits=True), Adam.

Provenance: in the style of TensorFlow's "Basic text classification" tutorial
    (https://www.tensorflow.org/tutorials/keras/text_classification: a Dense(1) logit and
    losses.BinaryCrossentropy(from_logits=True)).
Changes: our own script; synthetic two-blob data (90 rows, 4 features), Dense(8, relu) +
    Dense(1), Adam(1e-2), accuracy metric, batch 32 (does not divide 90), 2 epochs.
Expected: clean - passed, nothing "cannot check".
"""
import numpy as np
import keras

keras.utils.set_random_seed(2)
rng = np.random.default_rng(2)
labels = (rng.random(90) < 0.5).astype("float32")
x = (rng.normal(size=(90, 4)) + labels[:, None]).astype("float32")

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.Adam(1e-2),
              loss=keras.losses.BinaryCrossentropy(from_logits=True),
              metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)])
hist = model.fit(x, labels, batch_size=32, epochs=2, verbose=0)
print("final loss", round(float(hist.history["loss"][-1]), 4))
