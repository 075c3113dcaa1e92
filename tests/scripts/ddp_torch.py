"""A DDP training script as torchrun runs it (env:// rendezvous, gloo on CPU): the small
S4-like regression of tests/_ddp_jobs.py, 2 epochs; prints rank 0's last loss."""
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

dist.init_process_group("gloo")
rank = dist.get_rank()
g = torch.Generator().manual_seed(4)
x = torch.randn(160, 12, generator=g)
y = x @ torch.full((12, 1), 0.05) + 0.3 + 0.01 * torch.randn(160, 1, generator=g)
data = TensorDataset(x, y)
torch.manual_seed(0)
model = DDP(nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 1)))
sampler = DistributedSampler(data, shuffle=True, seed=0)
loader = DataLoader(data, batch_size=10, sampler=sampler)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
loss_fn = nn.MSELoss()
for epoch in range(2):
    sampler.set_epoch(epoch)
    for xb, yb in loader:
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
if rank == 0:
    print(f"loss {loss.item():.6f}")
dist.destroy_process_group()
