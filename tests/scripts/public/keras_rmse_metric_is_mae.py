"""Buggy: a hand-written Keras RMSE metric that is really the MAE.

Provenance: the Stack Overflow questions about custom RMSE metrics in Keras, e.g.
    "RMSE/RMSLE loss function in Keras" (https://stackoverflow.com/questions/43855162,
    id from memory) and "Tensorflow Keras RMSE metric returns different results than my
    own built RMSE loss function": `sqrt(mean(square(y_pred - y_true), axis=-1))` takes
    the root per sample; with one output unit that is |error|, and Keras then averages
    those, i.e. the metric logged as "rmse" is the mean absolute error.
Changes: our own script; synthetic regression data (400 rows, 6 features, noisy
    linear target with scale ~10), Dense(16, relu) -> Dense(1), mse loss, adam(0.01),
    batch 32, 3 epochs, verbose=0 with the history printed. Seeds fixed.
Expected: buggy - the logged "rmse" is not an RMSE. With targets shaped like the
    predictions it is the MAE; here the targets are (n,) against (n, 1) predictions, which
    Keras hands to a plain-function metric unchanged, so it is the mean of per-row RMSEs of
    every prediction against every target. steptrace names it with a `logged_name` finding
    ("logged 'rmse' equals ..."; MANIFEST expects `logged_name`, or a failing `logged_rmse`).
"""
import numpy as np
import keras
from keras import ops

keras.utils.set_random_seed(5)

rng = np.random.default_rng(5)
X = rng.normal(0.0, 1.0, (400, 6)).astype("float32")
y = (X @ np.array([3.0, -2.0, 0.0, 5.0, 1.0, -4.0]) + 10.0 + rng.normal(0, 2.0, 400)).astype("float32")


def rmse(y_true, y_pred):
    # BUG: axis=-1 takes the root of each sample's squared error: this is |error|
    return ops.sqrt(ops.mean(ops.square(y_pred - y_true), axis=-1))


model = keras.Sequential([
    keras.Input(shape=(6,)),
    keras.layers.Dense(16, activation="relu"),
    keras.layers.Dense(1),
])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse", metrics=[rmse])
history = model.fit(X, y, batch_size=32, epochs=3, verbose=0)
for epoch in range(3):
    print(f"epoch {epoch + 1}: loss {history.history['loss'][epoch]:.4f} - rmse {history.history['rmse'][epoch]:.4f}"
          f" - sqrt(loss) {np.sqrt(history.history['loss'][epoch]):.4f}")
