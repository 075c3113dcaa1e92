# A Keras script that raises half-way through fit (steptrace's own test script): the S2
# model trained with epochs=4, batch_size=4, shuffle=False, and a callback that gives up
# at the end of the second epoch. The six iterations made before the error must be kept.
import numpy as np
import tensorflow as tf

feature = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0])
label = np.array([5.0, 8.8, 9.6, 14.2, 18.8, 19.5, 21.4, 26.8, 28.9, 32.0, 33.8, 38.2])

model = tf.keras.models.Sequential([
    tf.keras.layers.Input(shape=(1,)),
    tf.keras.layers.Dense(units=1, kernel_initializer=tf.constant_initializer(.5))])
model.compile(optimizer=tf.keras.optimizers.RMSprop(learning_rate=0.05),
              loss="mean_squared_error", metrics=[tf.keras.metrics.RootMeanSquaredError()])


def give_up(epoch, logs):
    if epoch == 1:
        print("slope after epoch 2:", model.get_weights()[0][0][0])
        raise ValueError("loss is still too high, giving up")


model.fit(feature, label, batch_size=4, epochs=4, shuffle=False, verbose=0,
          callbacks=[tf.keras.callbacks.LambdaCallback(on_epoch_end=give_up)])
print("never printed")
