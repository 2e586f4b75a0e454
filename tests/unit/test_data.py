"""Offline MNIST: counts, label order, exact bytes, and the uint8 cache."""

import numpy as np

from worker.engine.data import load_mnist


def test_mnist_from_the_wheel_and_cache(tmp_path):
    first = load_mnist(tmp_path)
    assert first.x_train.shape == (60000, 28, 28) and first.x_test.shape == (10000, 28, 28)
    assert list(first.y_train[:5]) == [5, 0, 4, 1, 9] and list(first.y_test[:5]) == [7, 2, 1, 0, 4]
    assert first.x_train.dtype == np.uint8 and first.x_train.max() == 255
    # The published MNIST training-set mean pixel value is 33.318 (of 255).
    assert abs(first.x_train.mean() - 33.318) < 0.01
    assert np.bincount(first.y_test).tolist()[:3] == [980, 1135, 1032]
    assert (tmp_path / "mnist-uint8.npz").exists()
    again = load_mnist(tmp_path)
    assert np.array_equal(again.x_train, first.x_train)
