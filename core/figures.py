"""PNG figures, drawn with matplotlib's object API (thread-safe, no pyplot state):
the lab's first-layer filters, graficar_history and comparar_histories.

Names of runs and sweeps and the labels of sweep configurations come from clients: they are drawn
as plain text (no mathtext, no TeX), so `$\\sqrt{x}$` shows those characters and no name can
make a figure fail.
"""

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure
from matplotlib.text import Text


def _plain(*texts: Text) -> None:
    """Draw these texts as the characters they hold (no mathtext, no TeX)."""
    for text in texts:
        text.set_usetex(False)
        text.set_parse_math(False)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return buf.getvalue()


def filters_png(kernel: npt.NDArray[np.floating[Any]], n: int = 10) -> bytes:
    """First `n` columns of the first Dense kernel, each as a 28x28 tile (viridis, as in the lab)."""
    n = min(n, kernel.shape[1])
    cols = min(n, 10)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(1.5 * cols, 1.7 * rows))
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(kernel[:, i].reshape(28, 28), cmap="viridis")
        ax.set_axis_off()
        ax.set_title(f"Filter {i + 1}", fontsize=9)
    return _png(fig)


def history_png(history: Sequence[dict[str, Any]], label: str) -> bytes:
    """Accuracy and loss per epoch, train vs validation (the lab's graficar_history)."""
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(12, 5))
    for i, (metric, title) in enumerate([("accuracy", "Accuracy"), ("loss", "Loss")]):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(epochs, [h[metric] for h in history], marker="o", label="train")
        ax.plot(epochs, [h[f"val_{metric}"] for h in history], marker="o", label="validation")
        _plain(ax.set_title(f"{title} during training - {label}"))
        ax.set_xlabel("Epoch")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        _plain(*ax.legend().get_texts())
    return _png(fig)


def compare_png(
    histories: Sequence[tuple[str, Sequence[dict[str, Any]]]], title: str = ""
) -> bytes:
    """Validation accuracy and loss of several runs overlaid (the lab's comparar_histories)."""
    fig = Figure(figsize=(12, 5))
    for i, (metric, name) in enumerate(
        [("val_accuracy", "validation accuracy"), ("val_loss", "validation loss")]
    ):
        ax = fig.add_subplot(1, 2, i + 1)
        for label, history in histories:
            ax.plot(
                [h["epoch"] for h in history], [h[metric] for h in history], marker=".", label=label
            )
        _plain(ax.set_title(f"Comparison of {name}" + (f" - {title}" if title else "")))
        ax.set_xlabel("Epoch")
        ax.set_ylabel(name.capitalize())
        ax.grid(alpha=0.3)
        if histories:
            _plain(*ax.legend(fontsize=8).get_texts())
    return _png(fig)


def search_progress_png(
    points: Sequence[tuple[int, float, str]], metric: str, maximize: bool, title: str = ""
) -> bytes:
    """A search's objective per trial (completed dots, pruned crosses) and the best so far."""
    fig = Figure(figsize=(9, 5))
    ax = fig.add_subplot(1, 1, 1)
    pts = sorted(points)
    for status, marker, name in (("succeeded", "o", "completed"), ("pruned", "x", "pruned")):
        sel = [(n, v) for n, v, s in pts if s == status]
        if sel:
            ax.scatter([n for n, _ in sel], [v for _, v in sel], marker=marker, label=name)
    best: list[float] = []
    xs: list[int] = []
    for n, v, s in pts:
        if s != "succeeded":
            continue
        best.append(v if not best else (max if maximize else min)(best[-1], v))
        xs.append(n)
    if xs:
        ax.step(xs, best, where="post", color="black", label="best so far")
    ax.set_title("Search progress" + (f" - {title}" if title else ""))
    ax.set_xlabel("Trial")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def parallel_png(
    axes: Sequence[tuple[str, bool, list[Any]]],
    values: Sequence[float],
    metric: str,
    title: str = "",
) -> bytes:
    """Parallel coordinates of a search: one vertical axis per parameter (log ones on a log
    scale, categorical ones by choice) and the objective last, one line per trial coloured by its
    objective. `axes` holds (name, log, per-trial values)."""
    fig = Figure(figsize=(2.2 * (len(axes) + 1) + 2, 5))
    ax = fig.add_subplot(1, 1, 1)
    cols: list[list[float]] = []
    labels: list[list[str]] = []
    for _name, log, vals in axes:
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
            xs = [float(np.log10(v)) if log and v > 0 else float(v) for v in vals]
            lo, hi = min(xs), max(xs)
            cols.append([(x - lo) / (hi - lo) if hi > lo else 0.5 for x in xs])
            labels.append([f"{min(vals):.3g}", f"{max(vals):.3g}"])
        else:
            choices = sorted({str(v) for v in vals})
            idx = {c: i for i, c in enumerate(choices)}
            n = max(1, len(choices) - 1)
            cols.append([idx[str(v)] / n if len(choices) > 1 else 0.5 for v in vals])
            labels.append([choices[0], choices[-1]])
    lo, hi = min(values), max(values)
    cols.append([(v - lo) / (hi - lo) if hi > lo else 0.5 for v in values])
    labels.append([f"{lo:.4g}", f"{hi:.4g}"])
    cmap = matplotlib.colormaps["viridis"]
    for i in range(len(values)):
        ax.plot(
            range(len(cols)),
            [c[i] for c in cols],
            color=cmap(cols[-1][i]),
            alpha=0.8,
            marker="o",
            markersize=3,
        )
    for j, (low, high) in enumerate(labels):
        ax.axvline(j, color="grey", lw=0.8)
        ax.annotate(low, (j, -0.04), ha="center", va="top", fontsize=8)
        ax.annotate(high, (j, 1.04), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(cols)), [a[0] for a in axes] + [metric], fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.12, 1.12)
    ax.set_title("Parallel coordinates" + (f" - {title}" if title else ""))
    return _png(fig)


def importance_png(importances: dict[str, float], title: str = "") -> bytes:
    """Each parameter's share of the objective's variation (Optuna's importance evaluator)."""
    names = list(importances)[::-1]
    fig = Figure(figsize=(8, 1 + 0.5 * len(names)))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance")
    ax.set_xlim(0, 1)
    ax.set_title("Parameter importance" + (f" - {title}" if title else ""))
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def pareto_png(
    points: Sequence[tuple[int, float, float]],
    front: set[int],
    axes: Sequence[tuple[str, str]],
    title: str = "",
) -> bytes:
    """A search of several objectives: each completed trial (number, x, y) on the first two
    objectives, the Pareto front's trials marked, numbered and joined. `axes` holds (metric,
    direction) for x and y."""
    fig = Figure(figsize=(8, 6))
    ax = fig.add_subplot(1, 1, 1)
    rest = [(x, y) for n, x, y in points if n not in front]
    if rest:
        ax.scatter(
            [x for x, _ in rest], [y for _, y in rest], color="grey", alpha=0.6, label="dominated"
        )
    best = sorted((x, y, n) for n, x, y in points if n in front)
    if best:
        ax.plot(
            [x for x, _, _ in best],
            [y for _, y, _ in best],
            "o-",
            color="tab:red",
            label="Pareto front",
        )
        for x, y, n in best:
            ax.annotate(f"#{n}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    (mx, dx), (my, dy) = axes[0], axes[1]
    ax.set_xlabel(f"{mx} ({dx})")
    ax.set_ylabel(f"{my} ({dy})")
    ax.set_title("Pareto front" + (f" - {title}" if title else ""))
    _plain(ax.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
