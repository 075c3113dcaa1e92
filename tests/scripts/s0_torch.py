# Scenario S0t, pasted from seeds/000 ("初学者指南:使用Numpy、Keras和PyTorch实现简单的线性回归"),
# PyTorch part. The page flattens each code block onto one line; line breaks and indentation
# are restored at the statement and comment boundaries, nothing else is changed, except:
# - the PyTorch section says "the data generation part is not shown, it is the same code as
#   before", so the learner pastes the NumPy data-generation blocks (seed, x, noise, targets
#   and their shape prints) after the imports.

# Numpy is needed for data generation
import numpy as np
# Pytorch is needed for model build
import torch

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

# TensorDataset is needed to prepare the training data in form of tensors
from torch.utils.data import TensorDataset
# To run the model on either the CPU or GPU (if available)
device = 'cuda' if torch.cuda.is_available() else 'cpu'
# Since torch deals with tensors, we convert the numpy arrays into torch tensors
x_tensor = torch.from_numpy(x).float()
y_tensor = torch.from_numpy(targets).float()
# Combine the feature tensor and target tensor into torch dataset
train_data = TensorDataset(x_tensor , y_tensor)

# Initialize the seed to make the code reproducible
torch.manual_seed(42)
# This function is for model's parameters initialization
def init_weights(m):
    if isinstance(m, torch.nn.Linear):
        torch.nn.init.uniform_(m.weight , a = -0.1 , b = 0.1)
        torch.nn.init.uniform_(m.bias , a = -0.1 , b = 0.1)
# Define the model using Sequential class
# It contains only a single linear layer with one input and one output
model = torch.nn.Sequential(torch.nn.Linear(1 , 1)).to(device)
# Initialize the model's parameters using the defined function from above
model.apply(init_weights)
# Print the model's parameters
print(model.state_dict())
# Specify the learning rate
lr = 0.02
# The loss function is the mean squared error
loss_fn = torch.nn.MSELoss(reduction = 'mean')
# The optimizer is the stochastic gradient descent with a certain learning rate
optimizer = torch.optim.SGD(model.parameters() , lr = lr)

# DataLoader is needed for data batching
from torch.utils.data import DataLoader
# Training dataset is converted into batches of size 16 samples each.
# Shuffling is enabled for randomizing the data
train_loader = DataLoader(train_data , batch_size = 16 , shuffle = True)
# A function for training the model
# It is a function of a function (How fancy)
def make_train_step(model , optimizer , loss_fn):
    def train_step(x , y):
        # Set the model to training mode
        model.train()
        # Feedforward the model with the data (features) to obtain the predictions
        yhat = model(x)
        # Calculate the loss based on the predicted and actual targets
        loss = loss_fn(y , yhat)
        # Perform the backpropagation to find the gradients
        loss.backward()
        # Update the parameters with the calculated gradients
        optimizer.step()
        # Set the gradients to zero to prevent accumulation
        optimizer.zero_grad()
        return loss.item()
    return train_step
# Call the training function
train_step = make_train_step(model , optimizer , loss_fn)
# To store the loss of each epoch
losses = []
# Set the epochs to 100
epochs = 100
# Run the training function in each epoch on the batches of the data
# This is why we have two for loops
# Outer loop for epochs
# Inner loop for iterating through the training data batches
for epoch in range(epochs):
    # To accumulate the losses of all batches within a single epoch
    batch_loss = 0
    for x_batch , y_batch in train_loader:
        x_batch = x_batch.to(device)
        y_batch = y_batch.to(device)
        loss = train_step(x_batch , y_batch)
        batch_loss = batch_loss + loss
    # 63 is not a magic number. It is the number of batches in the training set
    # we have 1000 samples and the batch size is 16 (defined in the DataLoader)
    # 1000/16 = 63
    epoch_loss = batch_loss / 63
    losses.append(epoch_loss)
# Print the parameters after the training is done
print(model.state_dict())
