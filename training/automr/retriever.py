"""Memory retriever (paper eq. 3): s = masked softmax(MLP(z_t)^T M), MLP = Linear(d,256)-ReLU-Linear(256,d)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

HIDDEN = 256


class Retriever(nn.Module):
    def __init__(self, d: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.d = d
        self.hidden = hidden
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def logits(self, query: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        """Raw scores MLP(query)·memory [B,M]; masked slots hold 0 (their content never enters)."""
        mm = memory_mask.bool()
        memory = memory.masked_fill(~mm.unsqueeze(-1), 0.0)
        q = self.mlp(query)
        return torch.matmul(memory, q.unsqueeze(-1)).squeeze(-1)

    def forward(self, query: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        """query [B,d], memory [B,M,d], memory_mask [B,M] -> scores [B,M]; masked slots 0, empty rows all 0."""
        mm = memory_mask.bool()
        s = self.logits(query, memory, memory_mask)
        # Masked softmax written out so that a row without any valid slot yields zeros, not NaN.
        mx = s.masked_fill(~mm, -1e30).amax(dim=-1, keepdim=True)
        e = torch.exp((s - mx).masked_fill(~mm, 0.0)).masked_fill(~mm, 0.0)
        z = e.sum(dim=-1, keepdim=True)
        return e / torch.where(z > 0, z, torch.ones_like(z))


def identity_retriever(d: int, hidden: int = HIDDEN) -> Retriever:
    """Weights with MLP(x) = x exactly (plain semantic dot-product retrieval): [I; -I; 0], ReLU, [I, -I, 0]."""
    if 2 * d > hidden:
        raise ValueError(f"identity retriever needs 2*d <= hidden ({d=}, {hidden=})")
    r = Retriever(d, hidden)
    eye = torch.eye(d)
    with torch.no_grad():
        w1 = torch.zeros(hidden, d)
        w1[:d] = eye
        w1[d : 2 * d] = -eye
        w2 = torch.zeros(d, hidden)
        w2[:, :d] = eye
        w2[:, d : 2 * d] = -eye
        r.mlp[0].weight.copy_(w1)
        r.mlp[0].bias.zero_()
        r.mlp[2].weight.copy_(w2)
        r.mlp[2].bias.zero_()
    r.eval()
    return r


def export_retriever(retriever: Retriever, path: str, opset: int = 17) -> None:
    """Exports retriever.onnx: query [B,d], memory [B,M,d], memory_mask INT64 [B,M] -> scores [B,M]."""
    import onnx

    retriever = retriever.eval()
    d = retriever.d
    args = (torch.randn(2, d), torch.randn(2, 5, d), torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0]]))
    torch.onnx.export(
        retriever,
        args,
        path,
        input_names=["query", "memory", "memory_mask"],
        output_names=["scores"],
        dynamic_axes={"query": {0: "B"}, "memory": {0: "B", 1: "M"}, "memory_mask": {0: "B", 1: "M"}, "scores": {0: "B", 1: "M"}},
        opset_version=opset,
        do_constant_folding=True,
    )
    onnx.checker.check_model(onnx.load(path))
