# Scenario S2, pasted from seeds/002 (the learner who could not reproduce Keras by hand):
# the learner's Colab code, with the change the first answer proposes (start the slope at
# 0.5 and use its train_model, which prints the initial slope and bias and recomputes the
# loss by hand before and after the update). The page lost the code's indentation; it is
# restored. Paste breakages fixed as the learner would:
# - `tf.keras.optimizers.RMSprop(lr=...)` raises "Argument(s) not recognized: {'lr': ...}"
#   in Keras 3: renamed to `learning_rate=`;
# - the answer's train_model uses `np` but the learner's code never imports NumPy:
#   `import numpy as np` added to the imports;
# - Keras 3 rejects Python lists in fit ("Unrecognized data type: x=[1.0, ...] (of type
#   <class 'list'>)"): the two data lists are wrapped in np.array(...);
# - NumPy 2 refuses the ragged plot points of plot_the_model ("inhomogeneous shape", the
#   bias has shape (1,), bias + weight * x1 shape (1, 1)): `trained_weight * x1` becomes
#   `trained_weight[0] * x1`.
import numpy as np
import pandas as pd
import tensorflow as tf
from matplotlib import pyplot as plt

#@title Define the functions that build and train a model
def build_model(my_learning_rate):
  """Create and compile a simple linear regression model."""
  # Most simple tf.keras models are sequential.
  # A sequential model contains one or more layers.
  model = tf.keras.models.Sequential()

  # Describe the topography of the model.
  # The topography of a simple linear regression model
  # is a single node in a single layer.
  model.add(tf.keras.layers.Dense(units=1,
                                  input_shape=(1,),
                                  kernel_initializer=tf.constant_initializer(.5)))

  # Compile the model topography into code that
  # TensorFlow can efficiently execute. Configure
  # training to minimize the model's mean squared error.
  model.compile(optimizer=tf.keras.optimizers.RMSprop(learning_rate=my_learning_rate),
                loss="mean_squared_error",
                metrics=[tf.keras.metrics.RootMeanSquaredError()])

  return model


def train_model(model, feature, label, epochs, batch_size):
  """Train the model by feeding it data."""

  # Feed the feature values and the label values to the
  # model. The model will train for the specified number
  # of epochs, gradually learning how the feature values
  # relate to the label values.
  init_slope = model.get_weights()[0][0][0]
  init_bias = model.get_weights()[1][0]
  print('init slope is {}'.format(init_slope))
  print('init bias is {}'.format(init_bias))

  history = model.fit(x=feature,
                      y=label,
                      batch_size=batch_size,
                      epochs=epochs,
                      validation_data=(feature,label))

  # Gather the trained model's weight and bias.
  #print(model.get_weights())
  trained_weight = model.get_weights()[0]
  trained_bias = model.get_weights()[1]
  print("Slope")
  print(trained_weight)
  print("Intercept")
  print(trained_bias)
  # The list of epochs is stored separately from the
  # rest of history.

  prediction_manual = [trained_weight[0][0]*i + trained_bias[0] for i in feature]
  manual_loss = np.mean(((np.array(label)-np.array(prediction_manual))**2))
  print('manually computed loss after slope and bias update is {}'.format(manual_loss))
  print('manually computed rmse after slope and bias update is {}'.format(manual_loss**(1/2)))

  prediction_manual_init = [init_slope*i + init_bias for i in feature]
  manual_loss_init = np.mean(((np.array(label)-np.array(prediction_manual_init))**2))
  print('manually computed loss with init slope and bias is {}'.format(manual_loss_init))
  print('manually copmuted loss with init slope and bias is {}'.format(manual_loss_init**(1/2)))

  epochs = history.epoch

  # Gather the history (a snapshot) of each epoch.
  hist = pd.DataFrame(history.history)

  # print(hist)
  # Specifically gather the model's root mean
  #squared error at each epoch.
  rmse = hist["root_mean_squared_error"]

  return trained_weight, trained_bias, epochs, rmse

print("Defined create_model and train_model")

#@title Define the plotting functions
def plot_the_model(trained_weight, trained_bias, feature, label):
  """Plot the trained model against the training feature and label."""

  # Label the axes.
  plt.xlabel("feature")
  plt.ylabel("label")

  # Plot the feature values vs. label values.
  plt.scatter(feature, label)

  # Create a red line representing the model. The red line starts
  # at coordinates (x0, y0) and ends at coordinates (x1, y1).
  x0 = 0
  y0 = trained_bias
  x1 = my_feature[-1]
  y1 = trained_bias + (trained_weight[0] * x1)
  plt.plot([x0, x1], [y0, y1], c='r')

  # Render the scatter plot and the red line.
  plt.show()

def plot_the_loss_curve(epochs, rmse):
  """Plot the loss curve, which shows loss vs. epoch."""

  plt.figure()
  plt.xlabel("Epoch")
  plt.ylabel("Root Mean Squared Error")

  plt.plot(epochs, rmse, label="Loss")
  plt.legend()
  plt.ylim([rmse.min()*0.97, rmse.max()])
  plt.show()

print("Defined the plot_the_model and plot_the_loss_curve functions.")

my_feature = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0])
my_label   = np.array([5.0, 8.8, 9.6, 14.2, 18.8, 19.5, 21.4, 26.8, 28.9, 32.0, 33.8, 38.2])

learning_rate=0.05
epochs=1
my_batch_size=12

my_model = build_model(learning_rate)
trained_weight, trained_bias, epochs, rmse = train_model(my_model, my_feature,
                                                         my_label, epochs,
                                                         my_batch_size)
plot_the_model(trained_weight, trained_bias, my_feature, my_label)
plot_the_loss_curve(epochs, rmse)
