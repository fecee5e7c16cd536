"""Memory building (paper Eq. 2): the layer-L query state z for every interaction of every user.

z[u][m] = llm_lower(bos + seqs[u][max(0, m-9) : m+1]).query, i.e. the prompt of sample (u, m+1), built with the
model helper's `make_prompt_batch` so offline memory and the served gateway use one prompt definition.
At sample (u, pos): z_t = z[u][pos-1] and the memory is z[u][memory_indices(pos)] (at most 90 elements, all but the
newest WINDOW items).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .data import MAX_MEMORY, make_prompt_batch, memory_indices


@dataclass
class Memory:
    """All z vectors of a dataset, flattened: Z[offsets[u] + m] = z[u][m]."""

    Z: torch.Tensor  # [n_interactions, d] float32
    offsets: np.ndarray  # [n_users + 1] int64

    def z(self, u: int, m: int) -> torch.Tensor:
        return self.Z[self.offsets[u] + m]


@torch.no_grad()
def build_memory(model, prep, batch_size: int = 2048, progress: bool = True) -> Memory:
    model.eval()
    lens = np.asarray([len(s) for s in prep.seqs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    # Row (u, m+1) is the prompt ending at interaction m.
    rows = np.concatenate(
        [np.stack([np.full(n, u, dtype=np.int64), np.arange(1, n + 1, dtype=np.int64)], 1) for u, n in enumerate(lens)]
    )
    d = None
    out: torch.Tensor | None = None
    bar = tqdm(total=len(rows), desc="memory", unit="z", disable=not progress, mininterval=2.0)
    for s in range(0, len(rows), batch_size):
        ids, mask = make_prompt_batch(prep, rows[s : s + batch_size])
        _, q = model.lower(ids, mask)
        if out is None:
            d = q.shape[-1]
            out = torch.empty(len(rows), d, dtype=torch.float32)
        out[s : s + len(q)] = q.float()
        bar.update(len(q))
    bar.close()
    assert out is not None
    return Memory(Z=out, offsets=offsets)


@dataclass
class SampleView:
    """Per-sample indices into Memory.Z: the query and the (right-padded) memory slots, oldest first."""

    rows: np.ndarray  # [n, 2] (u, pos)
    query_idx: np.ndarray  # [n]
    mem_idx: np.ndarray  # [n, MAX_MEMORY], -1 = no element
    mem_pos: np.ndarray  # [n, MAX_MEMORY] position m in seqs[u], -1 = none

    @property
    def mem_mask(self) -> np.ndarray:
        return self.mem_idx >= 0

    @property
    def n_mem(self) -> np.ndarray:
        return self.mem_mask.sum(1)


def sample_view(mem: Memory, rows: np.ndarray) -> SampleView:
    n = len(rows)
    q = np.empty(n, dtype=np.int64)
    mi = np.full((n, MAX_MEMORY), -1, dtype=np.int64)
    mp = np.full((n, MAX_MEMORY), -1, dtype=np.int64)
    for i, (u, p) in enumerate(rows):
        u, p = int(u), int(p)
        q[i] = mem.offsets[u] + p - 1
        r = memory_indices(p)
        k = len(r)
        if k:
            mp[i, :k] = np.arange(r.start, r.stop)
            mi[i, :k] = mem.offsets[u] + mp[i, :k]
    return SampleView(rows=np.asarray(rows), query_idx=q, mem_idx=mi, mem_pos=mp)


def gather_memory(mem: Memory, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, M] indices (-1 = empty) -> memory [B, M, d] (zeros where empty), memory_mask [B, M] int64."""
    t = torch.from_numpy(idx)
    mask = t >= 0
    vecs = mem.Z[t.clamp(min=0)] * mask.unsqueeze(-1)
    return vecs, mask.long()
