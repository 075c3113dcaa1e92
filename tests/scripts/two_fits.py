# Two Keras training runs in one script (steptrace's own test script, not a seed page):
# the S2 learner's two questions, one after the other. First the run they made
# (epochs=1, batch_size=12), then the one they asked about (epochs=4, batch_size=4: three
# iterations per epoch, twelve in all) on a fresh model, both starting from slope 0.5 and
# intercept 0 as in the answer on the seed page.
import numpy as np
import tensorflow as tf

my_feature = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0])
my_label = np.array([5.0, 8.8, 9.6, 14.2, 18.8, 19.5, 21.4, 26.8, 28.9, 32.0, 33.8, 38.2])


def build_model(my_learning_rate):
    model = tf.keras.models.Sequential()
    model.add(tf.keras.layers.Input(shape=(1,)))
    model.add(tf.keras.layers.Dense(units=1, kernel_initializer=tf.constant_initializer(.5)))
    model.compile(optimizer=tf.keras.optimizers.RMSprop(learning_rate=my_learning_rate),
                  loss="mean_squared_error",
                  metrics=[tf.keras.metrics.RootMeanSquaredError()])
    return model


first = build_model(0.05)
history = first.fit(x=my_feature, y=my_label, batch_size=12, epochs=1, verbose=0)
print("run 1 loss", history.history["loss"][-1])
print("run 1 slope", first.get_weights()[0][0][0], "intercept", first.get_weights()[1][0])

second = build_model(0.05)
history = second.fit(x=my_feature, y=my_label, batch_size=4, epochs=4, shuffle=False, verbose=0)
print("run 2 loss", history.history["loss"][-1])
print("run 2 slope", second.get_weights()[0][0][0], "intercept", second.get_weights()[1][0])
