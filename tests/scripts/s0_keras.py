# Scenario S0k, pasted from seeds/000 ("初学者指南:使用Numpy、Keras和PyTorch实现简单的线性回归"),
# Keras part. The page flattens each code block onto one line; line breaks are restored at
# the statement and comment boundaries, nothing else is changed, except:
# - the Keras section says it reuses "the data generation code from the NumPy part" and
#   shows only the np.savez line, so the learner pastes the NumPy data-generation blocks
#   (seed, x, noise, targets and their shape prints) in front of it; the NumPy plot and the
#   NumPy training loop are not part of the Keras code;
# - the last line of the page is a notebook cell's displayed value (`bias,weights`); in a
#   script it prints nothing, so the learner wraps it in print(...).

# Numpy is needed to generate the data
import numpy as np
# Matplotlib is needed for visualization
import matplotlib.pyplot as plt
# TensorFlow is needed for model build
import tensorflow as tf

# We use this line to make the code reproducible (to get the same results when running)
np.random.seed(42)
# First, we should declare a variable containing the size of the training set we want to generate
observations = 1000
# Let us assume we have the following relationship
# y = 13x + 2
# y is the output and x is the input or feature
# We generate the feature randomly, drawing from an uniform distribution. There are 3 arguments of this method (low, high, size).
# The size of x is observations by 1. In this case: 1000 x 1.
x = np.random.uniform(low=-10, high=10, size=(observations,1))
# Let us print the shape of the feature vector
print (x.shape)

np.random.seed(42)
# We add a small noise to our function for more randomness
noise = np.random.uniform(-1, 1, (observations,1))
# Produce the targets according to the f(x) = 13x + 2 + noise definition.
# This is a simple linear relationship with one weight and bias.
# In this way, we are basically saying: the weight is 13 and the bias is 2.
targets = 13*x + 2 + noise
# Check the shape of the targets just in case. It should be n x m, where n is the number of samples
# and m is the number of output variables, so 1000 x 1.
print (targets.shape)

np.savez('TF_intro', inputs=x, targets=targets)

# Declare a variable where we will store the input size of our model
# It should be equal to the number of variables you have
input_size = 1
# Declare the output size of the model
# It should be equal to the number of outputs you've got (for regressions that's usually 1)
output_size = 1
# Outline the model
# We lay out the model in 'Sequential'
# Note that there are no calculations involved - we are just describing our network
model = tf.keras.Sequential([
                            # Each 'layer' is listed here
                            # The method 'Dense' indicates, our mathematical operation to be (xw + b)
                            tf.keras.layers.Input(shape=(input_size , )),
                            tf.keras.layers.Dense(output_size,
                                                 # there are extra arguments you can include to customize your model
                                                 # in our case we are just trying to create a solution that is
                                                 # as close as possible to our NumPy model
                                                 # kernel here is just another name for the weight parameter
                                                 kernel_initializer=tf.random_uniform_initializer(minval=-0.1, maxval=0.1),
                                                 bias_initializer=tf.random_uniform_initializer(minval=-0.1, maxval=0.1)
                                                 )
                            ])
# Print the structure of the model
model.summary()

# Load the training data from the NPZ
training_data = np.load('TF_intro.npz')
# We can also define a custom optimizer, where we can specify the learning rate
custom_optimizer = tf.keras.optimizers.SGD(learning_rate=0.02)
# 'compile' is the place where you select and indicate the optimizers and the loss
# Our loss here is the mean square error
model.compile(optimizer=custom_optimizer, loss='mse')
# finally we fit the model, indicating the inputs and targets
# if they are not otherwise specified the number of epochs will be 1 (a single epoch of training),
# so the number of epochs is 'kind of' mandatory, too
# we can play around with verbose; we prefer verbose=2
model.fit(training_data['inputs'], training_data['targets'], epochs=100, verbose=2)

# Extracting the weights and biases is achieved quite easily
model.layers[0].get_weights()
# We can save the weights and biases in separate variables for easier examination
# Note that there can be hundreds or thousands of them!
weights = model.layers[0].get_weights()[0]
bias = model.layers[0].get_weights()[1]
print((bias,weights))
