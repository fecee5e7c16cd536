"""AutoMR offline toolchain: data, reference generative recommender, retriever, Triton export."""

import torch as _torch

# The project's machines have 2 CPU cores; more threads only add contention.
_torch.set_num_threads(2)
