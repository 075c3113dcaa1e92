"""Your first deep learning project with Keras: Pima diabetes, 8-12-8-1 MLP.

Provenance: Machine Learning Mastery, Jason Brownlee, "Your First Deep Learning
    Project in Python with Keras Step-By-Step",
    https://machinelearningmastery.com/tutorial-first-neural-network-python-keras/
    (Pima Indians diabetes CSV: 8 inputs, Dense 12 relu, Dense 8 relu, Dense 1
    sigmoid, binary_crossentropy, adam, accuracy, batch_size 10).
Changes: our own rendition. No CSV download: 768 synthetic rows with the Pima
    columns' ranges and scales, unscaled as in the tutorial (pregnancies, glucose,
    blood pressure, skin, insulin, BMI, pedigree, age; ~35% positive outcome from a
    fixed logistic rule). 5 epochs instead of 150. verbose=0 everywhere and the losses
    printed by the script, because Keras progress bars print timings (the output must
    be deterministic). keras.Input instead of input_shape= (Keras 3 warns on the
    latter). Seeds fixed with keras.utils.set_random_seed.
Expected: clean - no FAILED verdict, one run (Keras fit) of 5 x 77 steps. Issue 16:
    today's false alarm "loss: expected 9.67, got 27.98" - Keras 3 computes
    sigmoid + binary_crossentropy from the hidden logits; steptrace clipped
    probabilities.
"""
import numpy as np
import keras
from keras.layers import Dense
from keras.models import Sequential

keras.utils.set_random_seed(7)


def load_pima_like(n=768, seed=7):
    """(n, 9) float array: the 8 Pima features, then the 0/1 outcome (like the CSV)."""
    rng = np.random.default_rng(seed)
    pregnancies = rng.poisson(3.8, n).clip(0, 17)
    glucose = rng.normal(121, 32, n).clip(0, 199).round()
    pressure = rng.normal(69, 19, n).clip(0, 122).round()
    skin = rng.normal(20.5, 16, n).clip(0, 99).round()
    insulin = (rng.exponential(80, n) * (rng.random(n) < 0.5)).clip(0, 846).round()
    bmi = rng.normal(32, 7.9, n).clip(0, 67.1).round(1)
    pedigree = rng.gamma(2.0, 0.236, n).clip(0.078, 2.42).round(3)
    age = (21 + rng.exponential(12, n)).clip(21, 81).round()
    logit = -9.2 + 0.035 * glucose + 0.09 * bmi + 0.12 * pregnancies + 0.9 * pedigree + 0.01 * age
    outcome = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return np.column_stack([pregnancies, glucose, pressure, skin, insulin, bmi, pedigree, age, outcome])


# load the dataset and split into input (X) and output (y) variables
dataset = load_pima_like()
X = dataset[:, 0:8]
y = dataset[:, 8]
print("rows:", X.shape[0], "positive:", int(y.sum()))

# define the keras model
model = Sequential()
model.add(keras.Input(shape=(8,)))
model.add(Dense(12, activation="relu"))
model.add(Dense(8, activation="relu"))
model.add(Dense(1, activation="sigmoid"))

# compile the keras model
model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])

# fit the keras model on the dataset
history = model.fit(X, y, epochs=5, batch_size=10, verbose=0)
for epoch, (loss, acc) in enumerate(zip(history.history["loss"], history.history["accuracy"]), start=1):
    print(f"epoch {epoch}: loss {loss:.4f} - accuracy {acc:.4f}")

# evaluate the keras model
_, accuracy = model.evaluate(X, y, verbose=0)
print("Accuracy: %.2f" % (accuracy * 100))

# make class predictions with the model
predictions = (model.predict(X, verbose=0) > 0.5).astype(int)
for i in range(5):
    print("%s => %d (expected %d)" % (X[i].tolist(), predictions[i, 0], y[i]))
