"""Training and evaluation of the reference model.

Training is BIGRec's causal-LM objective restricted to item tokens, run on chunks (bos + up to 10
items) where every position predicts its successor: ~10 targets per forward instead of 1, which
matters on a 2-core machine. Evaluation uses the exact per-sample prompts (bos + 10 most recent).

Memory-aware training: for a fraction ``mem_frac`` of the chunks that have a memory, 1 to ``max_mem``
elements of the user's memory are drawn at random, encoded in the same forward pass
(z_m = lower(window ending at m).query, gradients flowing) and fed to ``upper`` as memory slots; the
other chunks train with the memory masked, so the no-memory path stays a plain BIGRec-style model.
Without this the upper half never sees memory slots and would ignore or be confused by them.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .data import MAX_HISTORY, N_SPECIAL, WINDOW, Prepared, make_prompt_batch, prompts_from_windows, targets_of
from .exclusion import consumed_mask, first_occurrence
from .metrics import target_rank
from .model import ModelConfig, RecModel
from .popularity import metrics_from_ranks


@dataclass
class TrainConfig:
    # A cap, not a setting: the epoch is chosen on validation (patience below; see train_model's schedule).
    epochs: int = 40  # the exclusion-loss model on ml-100k was still improving at a cap of 20
    batch_size: int = 64  # chunks of up to `window` targets each
    lr: float = 2e-3
    weight_decay: float = 0.01
    seed: int = 0
    mem_frac: float = 0.8
    max_mem: int = 8
    mem_informed: float = 0.5  # share of memory chunks with one target-near draw (see chunk_memory)
    patience: int = 3
    select_metric: str = "NDCG@10"
    progress: bool = True
    max_train_chunks: int | None = None  # caps an epoch, for quick runs/tests
    time_budget_s: float | None = 5400.0  # wall clock for the whole run; stops after the epoch that crosses it
    exclude: bool = False  # loss over the allowed items only: consumed items (except the target) get no probability
    select_exclude: bool = False  # validation metric on the ranking with consumed items excluded (the served one)
    window: int = WINDOW  # prompt items (100 for the long_context baseline; needs ModelConfig.max_len > window)
    valid_samples: int | None = 4000  # seeded subsample of validation for the per-epoch check


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def train_prefix_lengths(prep: Prepared) -> np.ndarray:
    """Per user, 1 + the largest training target position (0 when the user has no training target)."""
    plen = np.zeros(len(prep.seqs), dtype=np.int64)
    rows = prep.splits["train"]
    if len(rows):
        np.maximum.at(plen, rows[:, 0], rows[:, 1] + 1)
    return plen


def make_chunks(prep: Prepared, rng: np.random.Generator, window: int = WINDOW) -> np.ndarray:
    """Training chunks (u, a, e): prompt bos + seqs[u][a:e] with a = max(0, e-window); every item
    position predicts its successor, so the chunk carries the targets seqs[u][a+1..e] (all in the
    training period). Chunk ends step by ``window`` from a random offset, so each epoch covers
    (almost) every training target once while the context lengths vary between epochs.
    """
    out = []
    for u, p in enumerate(train_prefix_lengths(prep)):
        if p < 2:
            continue
        for e in range(int(p) - 1 - int(rng.integers(0, window)), 0, -window):
            out.append((u, max(0, e - window), e))
    return np.asarray(out, dtype=np.int64).reshape(-1, 3)


def chunk_batch(prep: Prepared, chunks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask (left padded), targets [B,T] as catalog rows (-100 = no target)."""
    wins = [prep.seqs[u][a:e] for u, a, e in chunks]
    ids, mask = prompts_from_windows(wins)
    t = ids.shape[1]
    tgt = np.full((len(chunks), t), -100, dtype=np.int64)
    for i, (u, a, e) in enumerate(chunks):
        n = e - a
        # Token index t-n+j holds seqs[a+j] and predicts seqs[a+j+1].
        tgt[i, t - n :] = prep.seqs[u][a + 1 : e + 1] - N_SPECIAL
    return ids, mask, torch.from_numpy(tgt)


def chunk_memory(
    model: RecModel,
    prep: Prepared,
    chunks: np.ndarray,
    rng: np.random.Generator,
    frac: float,
    max_mem: int,
    informed: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Memory draws for a batch of chunks -> memory [B,k,d], memory_mask [B,k] (k >= 1).

    A drawn element m must be memory for every target in the chunk: m < a - 9 (target a+1 has
    memory m < a+1-10) and m >= e - MAX_HISTORY. z_m is encoded in the same forward pass.
    With probability ``informed`` one draw is instead the element whose item is closest (current
    item embeddings) to the chunk's last target: the kind of element a trained retriever brings,
    so that ``upper`` learns to exploit a useful memory, while the random draws teach it to
    shrug off useless ones.
    """
    emb = model.tok_emb.weight.detach() if informed > 0 else None
    picks: list[list[int]] = []
    for u, a, e in chunks:
        lo, hi = max(0, int(e) - MAX_HISTORY), int(a) - WINDOW + 1
        if hi <= lo or rng.random() >= frac:
            picks.append([])
            continue
        n = min(int(rng.integers(1, max_mem + 1)), hi - lo)
        chosen = [int(m) for m in rng.choice(np.arange(lo, hi), size=n, replace=False)]
        if emb is not None and rng.random() < informed:
            cand = torch.from_numpy(prep.seqs[u][lo:hi])
            best = lo + int(torch.argmax(emb[cand] @ emb[int(prep.seqs[u][e])]))
            if best not in chosen:
                chosen[0] = best
        picks.append(sorted(chosen))
    b, d = len(chunks), model.cfg.d_model
    k = max(1, max((len(x) for x in picks), default=0))
    memory = torch.zeros(b * k, d)
    mm = torch.zeros(b * k, dtype=torch.long)
    mem_rows = [(int(chunks[i][0]), m + 1) for i, ms in enumerate(picks) for m in ms]
    if mem_rows:
        slots = torch.tensor([i * k + j for i, ms in enumerate(picks) for j in range(len(ms))])
        mids, mmask = make_prompt_batch(prep, np.asarray(mem_rows, dtype=np.int64))
        _, z = model.lower(mids, mmask)
        memory = memory.index_copy(0, slots, z)
        mm[slots] = 1
    return memory.view(b, k, d), mm.view(b, k)


def chunk_exclusion(prep: Prepared, chunks: np.ndarray, tgt: torch.Tensor) -> torch.Tensor:
    """[B,T,n_items] bool: at each prompt position, the items the user consumed before its target, except the
    target itself (so a repeat target keeps its loss)."""
    t = tgt.shape[1]
    first = torch.from_numpy(np.stack([first_occurrence(prep.seqs[u], prep.n_items) for u, _, _ in chunks]))
    # Target position (index into seqs[u]) of each token slot; -1 = no target (nothing excluded).
    qpos = np.full((len(chunks), t), -1, dtype=np.int64)
    for i, (u, a, e) in enumerate(chunks):
        n = e - a
        qpos[i, t - n :] = np.arange(a + 1, e + 1)
    ex = first.unsqueeze(1) < torch.from_numpy(qpos).unsqueeze(2)
    has = tgt >= 0
    ex[has.nonzero(as_tuple=True) + (tgt[has],)] = False
    return ex


def chunk_loss(
    model: RecModel, prep: Prepared, chunks: np.ndarray, rng: np.random.Generator, tcfg: TrainConfig
) -> tuple[torch.Tensor, int]:
    ids, mask, tgt = chunk_batch(prep, chunks)
    memory, mm = chunk_memory(model, prep, chunks, rng, tcfg.mem_frac, tcfg.max_mem, tcfg.mem_informed)
    hidden, _ = model.lower(ids, mask)
    logits = model.upper_logits_all(hidden, mask, memory, mm)
    if tcfg.exclude:
        logits = logits.masked_fill(chunk_exclusion(prep, chunks, tgt), -float("inf"))
    n = int((tgt >= 0).sum())
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100), n


@torch.no_grad()
def score_rows(model: RecModel, prep: Prepared, rows: np.ndarray, batch_size: int = 1024, window: int = WINDOW) -> np.ndarray:
    """No-memory log_probs [n, n_items] for the given sample rows."""
    model.eval()
    out = []
    for s in range(0, len(rows), batch_size):
        ids, mask = make_prompt_batch(prep, rows[s : s + batch_size], window)
        out.append(model(ids, mask).numpy())
    return np.concatenate(out) if out else np.zeros((0, prep.n_items), dtype=np.float32)


@torch.no_grad()
def no_memory_ranks(
    model: RecModel, prep: Prepared, rows: np.ndarray, exclude: bool, window: int = WINDOW, batch_size: int = 1024
) -> np.ndarray:
    """Target ranks without memory, optionally with the user's consumed items excluded."""
    out = []
    for s in range(0, len(rows), batch_size):
        chunk = rows[s : s + batch_size]
        lp = torch.from_numpy(score_rows(model, prep, chunk, batch_size, window))
        ex = consumed_mask(prep, chunk) if exclude else None
        out.append(target_rank(lp, torch.from_numpy(targets_of(prep, chunk)), ex).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def evaluate(
    model: RecModel, prep: Prepared, split: str, exclude: bool = False, window: int = WINDOW, rows: np.ndarray | None = None
) -> dict[str, float]:
    rows = prep.splits[split] if rows is None else rows
    return metrics_from_ranks(no_memory_ranks(model, prep, rows, exclude, window))


def train_model(prep: Prepared, mcfg: ModelConfig | None = None, tcfg: TrainConfig | None = None) -> tuple[RecModel, dict]:
    mcfg = mcfg or ModelConfig(n_items=prep.n_items)
    tcfg = tcfg or TrainConfig()
    seed_everything(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)
    model = RecModel(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    est_chunks = len(make_chunks(prep, np.random.default_rng(tcfg.seed), tcfg.window))
    if tcfg.max_train_chunks is not None:
        est_chunks = min(est_chunks, tcfg.max_train_chunks)
    steps_per_epoch = max(1, (est_chunks + tcfg.batch_size - 1) // tcfg.batch_size)
    # Schedule by validation, not by a fixed epoch count: linear warm-up over the first epoch, then the full rate
    # until validation stops improving; every epoch without a new best halves it (annealing exactly when the metric
    # plateaus, whatever the dataset's size), and `patience` such epochs in a row end training.
    lr_scale = {"v": 1.0}
    warmup = steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_scale["v"] * min(1.0, (step + 1) / warmup))
    best, best_state, best_epoch, bad = -float("inf"), None, -1, 0
    history = []
    valid_rows = prep.splits["valid"]
    if tcfg.valid_samples is not None and len(valid_rows) > tcfg.valid_samples:
        vr = np.random.default_rng(tcfg.seed + 11)
        valid_rows = valid_rows[np.sort(vr.choice(len(valid_rows), tcfg.valid_samples, replace=False))]
    stopped = "epochs"
    t0 = time.time()
    for epoch in range(tcfg.epochs):
        model.train()
        chunks = make_chunks(prep, rng, tcfg.window)
        chunks = chunks[rng.permutation(len(chunks))][: steps_per_epoch * tcfg.batch_size]
        total, n = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{tcfg.epochs}", disable=not tcfg.progress, leave=False, mininterval=5.0)
        for i in bar:
            batch = chunks[i * tcfg.batch_size : (i + 1) * tcfg.batch_size]
            if len(batch) == 0:
                continue
            loss, nt = chunk_loss(model, prep, batch, rng, tcfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss) * nt
            n += nt
            if i % 10 == 0:
                bar.set_postfix(loss=f"{total / max(n, 1):.4f}")
        if len(valid_rows):
            valid = evaluate(model, prep, "valid", tcfg.select_exclude, tcfg.window, rows=valid_rows)
        else:
            valid = {tcfg.select_metric: -float(total / n)}
        elapsed = time.time() - t0
        history.append({"epoch": epoch + 1, "loss": total / max(n, 1), **valid, "elapsed_s": elapsed})
        if tcfg.progress:
            eta = elapsed / (epoch + 1) * (tcfg.epochs - epoch - 1)
            tqdm.write(
                f"epoch {epoch + 1}/{tcfg.epochs}: loss {total / max(n, 1):.4f} valid {tcfg.select_metric} "
                f"{valid[tcfg.select_metric]:.4f} ({elapsed:.0f} s, at most {eta:.0f} s left)"
            )
        if valid[tcfg.select_metric] > best:
            best, best_state, best_epoch, bad = valid[tcfg.select_metric], copy.deepcopy(model.state_dict()), epoch + 1, 0
        else:
            bad += 1
            lr_scale["v"] *= 0.5
            if bad >= tcfg.patience:
                stopped = "patience"
                break
        if tcfg.time_budget_s is not None and elapsed > tcfg.time_budget_s:
            stopped = "time_budget"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    info = {
        "train_seconds": time.time() - t0,
        "best_epoch": best_epoch,
        "best_valid": best,
        "stopped_by": stopped,
        "history": history,
        "train_config": asdict(tcfg),
        "model_config": asdict(mcfg),
        "torch_threads": torch.get_num_threads(),
    }
    return model, info



