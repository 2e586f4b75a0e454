"""PNG figures of where a trained model errs: the confusion matrix and the gallery of its most
confident mistakes, drawn from the numbers and images a run stores (core.evaluation).

Drawn with matplotlib's object API like core.figures. Run names come from clients: they are drawn
as plain text (no mathtext, no TeX), so `$x$` shows those characters and no name breaks a figure.
"""

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from core.evaluation import CLASSES, Mistakes
from core.figures import _png


def confusion_png(counts: Sequence[Sequence[int]], title: str) -> bytes:
    """counts[true][predicted] as a heat map with the count in each cell; the diagonal (right
    answers) is drawn apart so the errors' colours are not washed out by it."""
    m = np.asarray(counts, dtype=np.int64)
    errors = m.copy()
    np.fill_diagonal(errors, 0)
    fig = Figure(figsize=(7.2, 6.4))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(errors, cmap="Reds", vmin=0, vmax=max(1, int(errors.max())))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="misclassified images")
    for t in range(CLASSES):
        for p in range(CLASSES):
            if m[t, p] == 0:
                continue
            dark = t != p and errors[t, p] > 0.6 * errors.max()
            ax.text(
                p,
                t,
                str(m[t, p]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else ("#1a5e20" if t == p else "black"),
                fontweight="bold" if t == p else "normal",
            )
    ax.set_xticks(range(CLASSES))
    ax.set_yticks(range(CLASSES))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    total, right = int(m.sum()), int(np.trace(m))
    accuracy = f"{100 * right / total:.2f}% right" if total else "no images"
    ax.set_title(
        f"{title}\n{total} images, {accuracy}", fontsize=10, usetex=False, parse_math=False
    )
    return _png(fig)


def mistakes_png(mistakes: Mistakes, title: str, n: int = 32, columns: int = 8) -> bytes:
    """The first `n` mistakes (most confident first), each captioned true -> predicted (p).
    One mosaic in one axes: a subplot per image would cost matplotlib seconds per figure."""
    n = min(n, len(mistakes.labels))
    columns = max(1, min(columns, n))
    rows = max(1, (n + columns - 1) // columns)
    cell_w, cell_h, top = 48, 46, 13  # mosaic pixels per tile: 28 of image, a caption above
    mosaic = np.zeros((rows * cell_h, columns * cell_w))
    for i in range(n):
        r, c = divmod(i, columns)
        y, x = r * cell_h + top, c * cell_w + (cell_w - 28) // 2
        mosaic[y : y + 28, x : x + 28] = mistakes.images[i]
    scale = 2.2 / 80  # inches per mosaic pixel: an image 62 screen pixels wide at _png's 80 dpi
    head = 0.55  # inches for the title
    fig = Figure(figsize=(columns * cell_w * scale, rows * cell_h * scale + head))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - head / fig.get_figheight()))
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    for i in range(n):
        r, c = divmod(i, columns)
        ax.text(
            c * cell_w + cell_w / 2,
            r * cell_h + top - 1,
            f"{mistakes.labels[i]} → {mistakes.predicted[i]} ({100 * mistakes.confidence[i]:.0f}%)",
            ha="center",
            va="bottom",
            fontsize=9,
        )
    if n == 0:
        ax.text(columns * cell_w / 2, cell_h / 2, "no misclassified test image", ha="center")
    fig.suptitle(
        f"{title}\nmost confident of {mistakes.total} mistakes: true → predicted (confidence)",
        fontsize=10,
        usetex=False,
        parse_math=False,
    )
    return _png(fig)
