# steptrace's own test script for kills: a small Keras fit (one Dense layer, SGD, batches of
# 8) of STEPS steps, SLEEP seconds apart, printing each step number at its batch end.
# Usage: steps_keras.py STEPS SLEEP
import sys
import time

import numpy as np
import keras

steps, pause = int(sys.argv[1]), float(sys.argv[2])
keras.utils.set_random_seed(0)
x = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")
y = x @ np.array([[2.0], [-3.4]], dtype="float32") + 4.2
model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
count = {"n": 0}


def batch_end(batch, logs):
    count["n"] += 1
    print(count["n"], flush=True)
    time.sleep(pause)


epochs = -(-steps // 8)
model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
          callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=batch_end)])
print("final", float(model.evaluate(x, y, verbose=0)), flush=True)
