# steptrace's own test script for kills and locks: a small PyTorch loop (a 2-8-1 MLP, SGD,
# batches of 8 from a DataLoader) of STEPS steps, SLEEP seconds apart, printing each step
# number once its optimizer.step() is done. Usage: steps_torch.py STEPS SLEEP
import sys
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

steps, pause = int(sys.argv[1]), float(sys.argv[2])
torch.manual_seed(0)
X = torch.randn(64, 2)
y = X @ torch.tensor([[2.0], [-3.4]]) + 4.2
model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
loader = DataLoader(TensorDataset(X, y), batch_size=8, shuffle=True)
done = 0
while done < steps:
    for xb, yb in loader:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        opt.step()
        done += 1
        print(done, flush=True)
        time.sleep(pause)
        if done == steps:
            break
print("final", float(loss), flush=True)
