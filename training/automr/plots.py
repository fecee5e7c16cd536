"""Figures next to the result JSON: the paper's Figure 2 (AutoMR vs random retrieval, box plots over bootstrap
resamples) and Figure 3 (timelines of the memories AutoMR retrieved for example users)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display on CI or the 2-core box
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DAY = 86_400.0


def plot_random_comparison(boot: dict, path: str, dataset: str) -> str:
    """boot: method -> metric -> [n_boot] means. Box = 25/50/75th percentile, whiskers 2.5/97.5."""
    metrics = ("recall@1", "recall@5", "ndcg@5", "ndcg@10")
    methods = [m for m in ("no_memory", "random_memory", "automr") if m in boot]
    colors = {"no_memory": "#999999", "random_memory": "#4c72b0", "automr": "#dd8452"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.4))
    for ax, met in zip(axes, metrics):
        data = [boot[m][met] for m in methods]
        bp = ax.boxplot(data, whis=(2.5, 97.5), showfliers=False, patch_artist=True, widths=0.6)
        for patch, m in zip(bp["boxes"], methods):
            patch.set_facecolor(colors[m])
        ax.set_xticks(range(1, len(methods) + 1), [m.replace("_memory", "") for m in methods], rotation=20)
        ax.set_title(met)
    fig.suptitle(f"{dataset}: AutoMR vs random retrieval (bootstrap resamples of the test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_timelines(prep, view, ev: dict, path: str, n_users: int = 8) -> str:
    """For test samples AutoMR gets right at 1 and no_memory gets wrong: every earlier interaction on a time axis
    (days before the target), the prompt window, the memory, and the element AutoMR retrieved."""
    sel = ev["rq3"]["sample_index"]
    seen, picks = set(), []
    for i in sel:  # one sample per user, the ones reaching furthest back first
        u = int(view.rows[i, 0])
        if u not in seen:
            seen.add(u)
            picks.append(i)
    choice = ev["_choices"]["automr"]
    picks = sorted(picks, key=lambda i: -(int(view.rows[i, 1]) - int(view.mem_pos[i, choice[i]])))[:n_users]
    fig, ax = plt.subplots(figsize=(10, 0.55 * max(3, len(picks)) + 1.2))
    for y, i in enumerate(picks):
        u, p = int(view.rows[i, 0]), int(view.rows[i, 1])
        t = prep.times[u]
        start = max(0, p - 100)
        days = (t[start:p] - t[p]) / DAY
        window = np.arange(start, p) >= p - 10
        ax.scatter(days[~window], np.full((~window).sum(), y), s=10, c="#bbbbbb", label="memory" if y == 0 else None)
        ax.scatter(days[window], np.full(window.sum(), y), s=10, c="#4c72b0", label="prompt window" if y == 0 else None)
        m = int(view.mem_pos[i, choice[i]])
        ax.scatter([(t[m] - t[p]) / DAY], [y], s=90, facecolors="none", edgecolors="#dd8452", linewidths=2,
                   label="retrieved by AutoMR" if y == 0 else None)
    ax.set_yticks(range(len(picks)), [f"user {prep.users[int(view.rows[i, 0])]}" for i in picks])
    ax.set_xlabel("days before the target interaction")
    ax.set_title(f"{prep.name}: memories retrieved where AutoMR hits@1 and no_memory misses ({len(sel)} samples)")
    if picks:
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
