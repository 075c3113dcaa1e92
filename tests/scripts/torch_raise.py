# A PyTorch script that raises half-way (steptrace's own test script): S1's raw-tensor
# loop on the S1 data, with a check that stops it with an error in the third epoch after
# two batches. The 5 + 5 + 2 iterations made before the error must be kept.
import torch
from torch.utils.data import DataLoader, TensorDataset

inputs = torch.tensor([[73, 67, 43], [91, 88, 64], [87, 134, 58], [102, 43, 37], [69, 96, 70],
                       [74, 66, 43], [91, 87, 65], [88, 134, 59], [101, 44, 37], [68, 96, 71],
                       [73, 66, 44], [92, 87, 64], [87, 135, 57], [103, 43, 36], [68, 97, 70]],
                      dtype=torch.float32)
targets = torch.tensor([[56, 70], [81, 101], [119, 133], [22, 37], [103, 119], [57, 69], [80, 102],
                        [118, 132], [21, 38], [104, 118], [57, 69], [82, 100], [118, 134], [20, 38],
                        [102, 120]], dtype=torch.float32)
torch.manual_seed(0)
train_loader = DataLoader(TensorDataset(inputs, targets), batch_size=3, shuffle=True)
w = torch.randn(2, 3, requires_grad=True)
b = torch.randn(2, requires_grad=True)

for epoch in range(10):
    for i, (x, y) in enumerate(train_loader):
        preds = x @ w.t() + b
        diff = preds - y
        loss = torch.sum(diff * diff) / diff.numel()
        loss.backward()
        with torch.no_grad():
            w -= w.grad * 1e-5
            b -= b.grad * 1e-5
            w.grad.zero_()
            b.grad.zero_()
        if epoch == 2 and i == 1:
            print("w before the error:", w.detach().numpy().ravel().tolist())
            raise RuntimeError("stopping in epoch 3")
