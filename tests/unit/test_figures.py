"""PNG figures: valid images whose layout follows the data."""

import io

import matplotlib.image as mpimg
import numpy as np

from core import figures


def shape(png: bytes):
    assert png[:4] == b"\x89PNG"
    return mpimg.imread(io.BytesIO(png), format="png").shape


def test_filters_tiles_follow_n():
    kernel = np.random.default_rng(0).normal(size=(784, 50)).astype(np.float32)
    one, ten, twenty = (shape(figures.filters_png(kernel, n)) for n in (1, 10, 20))
    assert ten[1] > 5 * one[1]  # ten tiles in a row
    assert twenty[0] > 1.5 * ten[0]  # a second row
    assert shape(figures.filters_png(kernel[:, :3], 10))[1] < ten[1]  # capped by the columns


def test_history_and_compare():
    hist = [
        {
            "epoch": i,
            "loss": 1 / i,
            "accuracy": 1 - 1 / (i + 1),
            "val_loss": 1.1 / i,
            "val_accuracy": 1 - 1.1 / (i + 1),
        }
        for i in range(1, 6)
    ]
    assert shape(figures.history_png(hist, "x"))[1] > 500
    assert shape(figures.compare_png([("a", hist), ("b", hist[:3])], "t"))[1] > 500
    assert shape(figures.compare_png([], "empty"))[0] > 100
