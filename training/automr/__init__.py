"""AutoMR offline toolchain: data, reference generative recommender, retriever, Triton export."""

import os as _os

# On the project's shared 2-core machines, OpenMP's default spin-waiting makes a busy box ~10x slower
# for this small model (measured: 0.6 s vs 0.05 s per training step under load). It must be set
# before torch loads libgomp, hence here, before the first torch import.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch as _torch  # noqa: E402

_torch.set_num_threads(int(_os.environ.get("AUTOMR_THREADS", "2")))
