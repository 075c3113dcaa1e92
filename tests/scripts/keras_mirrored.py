# A Keras fit under tf.distribute.MirroredStrategy over two logical CPU devices (issue 15):
# what `steptrace run` must trace without changing the script's result.
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras  # noqa: E402

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(0)
x = rng.normal(size=(40, 3)).astype("float32")
y = (x @ np.array([[1.0], [2.0], [-1.0]]) + 0.5).astype("float32")
with strategy.scope():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
history = model.fit(x, y, batch_size=20, epochs=2, verbose=0)
print(f"final loss {history.history['loss'][-1]:.6f}")
