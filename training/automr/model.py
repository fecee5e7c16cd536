"""Reference generative recommender: a small decoder-only causal transformer over item tokens.

BIGRec-style: the prompt is bos + the K most recent item tokens, the objective is next-item
cross-entropy over the catalog (the causal-LM loss restricted to item tokens). GPT-style pre-norm
blocks (LayerNorm, GELU MLP), learned absolute position embeddings at the input, output head tied to
the item-token embeddings.

The model is split at layer L (``split_layer``):
  * ``lower`` runs the embeddings and blocks [0, L) and returns the hidden states plus ``query``
    (the state at the last real token), i.e. the paper's z = LLM^{(:L)}(x).
  * ``upper`` takes those states and k memory vectors, places the memory as extra positions ahead of
    the prompt (the paper's combine(z_t, z_m')), runs blocks [L, n) and the head at the last real
    prompt position.

Attention at layer >= L over [memory (k), prompt (T)]: prompt rows see real prompt tokens causally and
the memory slots whose mask is 1; a memory row sees itself only; a pad row sees itself only. No row
is ever fully masked, so softmax never produces NaN, and masked memory vectors are zeroed with a
``where`` before any use, so whatever a masked slot holds (NaN included) cannot reach an output.
Attention is written out by hand (rather than nn.MultiheadAttention) so the masks above, and the
exported ONNX graph, are exactly what is written here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import N_SPECIAL

NEG = -1e9


@dataclass
class ModelConfig:
    n_items: int
    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 4
    split_layer: int | None = None  # None -> n_layers // 2
    max_len: int = 16
    dropout: float = 0.1
    tie_head: bool = True

    def __post_init__(self) -> None:
        if self.split_layer is None:
            self.split_layer = default_split_layer(self.n_layers)
        if not 0 < self.split_layer < self.n_layers:
            raise ValueError(f"split_layer must be in [1, {self.n_layers - 1}], got {self.split_layer}")
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be divisible by n_heads")


def default_split_layer(n_layers: int) -> int:
    return max(1, n_layers // 2)


class Block(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d = d
        self.dh = d // n_heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.attn_drop = nn.Dropout(dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """x [B,S,d]; allowed bool [B,S,S] (row = query position, column = key position)."""
        b = x.shape[0]
        d, h, dh = self.d, self.n_heads, self.dh
        qkv = self.qkv(self.ln1(x))
        q, k, v = qkv.chunk(3, dim=-1)
        q = q.reshape(b, -1, h, dh).transpose(1, 2)
        k = k.reshape(b, -1, h, dh).transpose(1, 2)
        v = v.reshape(b, -1, h, dh).transpose(1, 2)
        att = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(dh))
        att = att.masked_fill(~allowed.unsqueeze(1), NEG)
        att = self.attn_drop(torch.softmax(att, dim=-1))
        y = torch.matmul(att, v).transpose(1, 2).reshape(b, -1, d)
        x = x + self.drop(self.proj(y))
        x = x + self.drop(self.fc2(F.gelu(self.fc1(self.ln2(x)))))
        return x


def _prompt_allowed(mask: Tensor) -> Tensor:
    """[B,T,T]: causal over real keys; every row (pad rows included) also sees itself."""
    t = mask.shape[1]
    idx = torch.arange(t, device=mask.device)
    causal = idx.unsqueeze(0) <= idx.unsqueeze(1)  # [T,T], key <= query
    eye = idx.unsqueeze(0) == idx.unsqueeze(1)
    real = mask.bool()
    return (causal.unsqueeze(0) & real.unsqueeze(1)) | eye.unsqueeze(0)


def last_index(mask: Tensor) -> Tensor:
    """Index of the last position where mask == 1 (0 for an all-pad row); works for any padding side."""
    t = mask.shape[1]
    idx = torch.arange(1, t + 1, device=mask.device).unsqueeze(0)
    return torch.argmax(mask.long() * idx, dim=1)


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """x [B,S,d], index [B] -> x[b, index[b]] as [B,d]."""
    g = index.reshape(-1, 1, 1).expand(-1, 1, x.shape[2])
    return torch.gather(x, 1, g).squeeze(1)


class RecModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.tok_emb = nn.Embedding(N_SPECIAL + cfg.n_items, d)
        self.pos_emb = nn.Embedding(cfg.max_len, d)
        self.emb_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(d, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(d)
        self.head = None if cfg.tie_head else nn.Linear(d, cfg.n_items, bias=False)
        self.head_bias = nn.Parameter(torch.zeros(cfg.n_items))
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    # -- pieces ---------------------------------------------------------------------------------

    def embed(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        # Position ids count real tokens only, so left padding never changes a sequence's result.
        pos = (torch.cumsum(attention_mask.long(), dim=1) - 1).clamp(0, self.cfg.max_len - 1)
        return self.emb_drop(self.tok_emb(input_ids) + self.pos_emb(pos))

    def logits_from_state(self, h: Tensor) -> Tensor:
        h = self.ln_f(h)
        w = self.head.weight if self.head is not None else self.tok_emb.weight[N_SPECIAL:]
        return torch.matmul(h, w.t()) + self.head_bias

    # -- public API -----------------------------------------------------------------------------

    def lower(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """-> hidden [B,T,d] (after layer L), query [B,d] (state at the last real token)."""
        x = self.embed(input_ids, attention_mask)
        allowed = _prompt_allowed(attention_mask)
        for blk in self.blocks[: self.cfg.split_layer]:
            x = blk(x, allowed)
        return x, gather_rows(x, last_index(attention_mask))

    def _upper_run(self, hidden: Tensor, attention_mask: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        """States after the last block over [memory (k), prompt (T)]: [B, k+T, d]."""
        mm = memory_mask.bool()
        memory = memory.masked_fill(~mm.unsqueeze(-1), 0.0)  # NaN/inf in a masked slot cannot leak
        k = memory.shape[1]
        real = attention_mask.bool()
        ki = torch.arange(k, device=memory.device)
        mem_eye = (ki.unsqueeze(0) == ki.unsqueeze(1)).unsqueeze(0).expand(memory.shape[0], -1, -1)
        mem_to_prompt = torch.zeros_like(real).unsqueeze(1).expand(-1, k, -1)  # [B,k,T] False
        prompt_to_mem = real.unsqueeze(2) & mm.unsqueeze(1)  # [B,T,k]; pad rows see no memory
        top = torch.cat([mem_eye, mem_to_prompt], dim=2)
        bottom = torch.cat([prompt_to_mem, _prompt_allowed(attention_mask)], dim=2)
        allowed = torch.cat([top, bottom], dim=1)
        x = torch.cat([memory, hidden], dim=1)
        for blk in self.blocks[self.cfg.split_layer :]:
            x = blk(x, allowed)
        return x

    def upper_logits(self, hidden: Tensor, attention_mask: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        """Logits [B, n_items] at the last real prompt position."""
        x = self._upper_run(hidden, attention_mask, memory, memory_mask)
        return self.logits_from_state(gather_rows(x, last_index(attention_mask) + memory.shape[1]))

    def upper_logits_all(self, hidden: Tensor, attention_mask: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        """Logits [B, T, n_items] at every prompt position (training: every position predicts its next item)."""
        x = self._upper_run(hidden, attention_mask, memory, memory_mask)
        return self.logits_from_state(x[:, memory.shape[1] :])

    def upper(self, hidden: Tensor, attention_mask: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        """-> log_probs [B, n_items]; memory [B,k,d] with memory_mask [B,k] (k >= 1)."""
        return torch.log_softmax(self.upper_logits(hidden, attention_mask, memory, memory_mask), dim=-1)

    def forward_logits(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        x = self.embed(input_ids, attention_mask)
        allowed = _prompt_allowed(attention_mask)
        for blk in self.blocks:
            x = blk(x, allowed)
        return self.logits_from_state(gather_rows(x, last_index(attention_mask)))

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Unsplit model without memory: log_probs [B, n_items]."""
        return torch.log_softmax(self.forward_logits(input_ids, attention_mask), dim=-1)


def save_model(model: RecModel, path: str, extra: dict | None = None) -> None:
    torch.save({"cfg": asdict(model.cfg), "state": model.state_dict(), "extra": extra or {}}, path)


def load_model(path: str) -> RecModel:
    ck = torch.load(path, map_location="cpu")
    model = RecModel(ModelConfig(**ck["cfg"]))
    model.load_state_dict(ck["state"])
    model.eval()
    return model
