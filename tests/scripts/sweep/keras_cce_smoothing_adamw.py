"""Clean: Keras softmax classifier, CategoricalCrossentropy(label_smoothing=0.1), AdamW.

Provenance: in the style of keras.io's classification examples with one-hot targets
    (keras.utils.to_categorical) and label smoothing (keras.io/api/losses/).
Changes: our own script; synthetic 3-class blobs (75 rows, 4 features), Dense(10, gelu) +
    Dense(3, softmax), CategoricalCrossentropy(label_smoothing=0.1), AdamW(1e-2),
    batch 20 (does not divide 75), validation_split=0.2, 2 epochs. Seeds fixed.
Expected: clean - passed, nothing "cannot check".
"""
import numpy as np
import keras

keras.utils.set_random_seed(3)
rng = np.random.default_rng(3)
labels = rng.integers(0, 3, 75)
x = (rng.normal(size=(75, 4)) + np.eye(4)[labels] * 2).astype("float32")
y = keras.utils.to_categorical(labels, 3)

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10, activation="gelu"),
                          keras.layers.Dense(3, activation="softmax")])
model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-2),
              loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1), metrics=["accuracy"])
hist = model.fit(x, y, batch_size=20, epochs=2, validation_split=0.2, verbose=0)
print("final loss", round(float(hist.history["loss"][-1]), 4))
