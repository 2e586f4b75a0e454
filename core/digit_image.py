"""Pictures of handwritten digits, brought into MNIST's form for `POST /experiments/{id}/predict`.

MNIST was made from NIST's black-and-white digits: each was scaled to fit a 20x20 box, keeping its
aspect ratio (the anti-aliasing leaves grey levels), then placed in a 28x28 field so that its
centre of mass sits at the field's centre; white digit on a black background. `to_mnist` does the
same to a picture of any size: grey levels, inverted when the background is light, the background
level taken away and the contrast stretched to 0-255, the digit cropped to its ink, scaled into
20x20 and centred by its centre of mass (at 14.0, 14.0 in pixel indices, where MNIST's are).
Transparent pixels count as background.

`batch` checks images that already are 28x28 arrays of 0-255 (JSON lists) and names the first
one that is not, so the API can answer a 422 that says where.
"""

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

SIDE = 28  # MNIST's field
BOX = 20  # the box each digit is scaled into
MIN_CONTRAST = 32  # grey levels (of 255) between background and ink below which nothing is drawn
INK = 0.2  # share of the darkest-to-lightest range that counts as ink when cropping
FLOOR = 0.08  # share below which a pixel is background noise (set to 0)

F64 = npt.NDArray[np.float64]
NUMBERS = frozenset({int, float})  # JSON numbers; not bool, a subclass of int


class ImageError(ValueError):
    """An image the API cannot use; `where` is its place in the request body."""

    def __init__(self, message: str, where: tuple[str | int, ...] = ()):
        super().__init__(message)
        self.where = where


def batch(images: Sequence[Any]) -> F64:
    """JSON images as an (n, 28, 28) array: each 28 rows of 28 numbers from 0 to 255. The first
    image that is not is named (its index in `where`), and what is wrong with it."""
    shape = f"an image is {SIDE} rows of {SIDE} numbers"
    for i, image in enumerate(images):
        if not isinstance(image, list) or len(image) != SIDE:
            what = f"{len(image)} rows" if isinstance(image, list) else type(image).__name__
            raise ImageError(f"is {what}; {shape}", (i,))
        for r, row in enumerate(image):
            if not isinstance(row, list) or len(row) != SIDE:
                what = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
                raise ImageError(f"row {r} is {what}; {shape}", (i,))
            if not NUMBERS.issuperset(map(type, row)):
                c, v = next((c, v) for c, v in enumerate(row) if type(v) not in NUMBERS)
                raise ImageError(f"row {r}, column {c}: {v!r:.40} is not a number", (i,))
    try:
        x = np.asarray(images, dtype=np.float64).reshape(len(images), SIDE, SIDE)
    except OverflowError:  # an integer beyond any float: find the image it is in
        i = next(i for i, image in enumerate(images) if _too_large(image))
        raise ImageError("has a number too large to be a grey level 0-255", (i,)) from None
    bad = ~np.isfinite(x) | (x < 0) | (x > 255)
    if bad.any():
        i, r, c = (int(v) for v in np.argwhere(bad)[0])
        raise ImageError(f"row {r}, column {c}: {x[i, r, c]} is not a grey level 0-255", (i,))
    return x


def _too_large(image: list[list[int | float]]) -> bool:
    return any(isinstance(v, int) and abs(v) > 2**1023 for row in image for v in row)


def decode_png(data: bytes, max_pixels: int) -> F64:
    """A PNG's grey levels (h, w), 0-255, transparent pixels set to the background."""
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
    except Image.DecompressionBombError as exc:  # far beyond max_pixels: refused before decoding
        raise ImageError(f"has more than the {max_pixels} pixels allowed") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError("is not a PNG image") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"is {width}x{height} pixels, more than the {max_pixels} allowed "
            "(LABQ_MAX_PREDICT_PIXELS); a digit needs far fewer"
        )
    try:
        image.load()
        return _grey(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"is a damaged PNG ({exc})") from exc


def _grey(image: Image.Image) -> F64:
    if image.mode.startswith("I"):  # 16-bit grey
        return np.asarray(image, dtype=np.float64) * (255.0 / 65535.0)
    if "A" not in image.getbands() and "transparency" not in image.info:
        return np.asarray(image.convert("L"), dtype=np.float64)
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
    alpha = rgba[..., 3] / 255.0
    grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, as Pillow's "L"
    # Transparent parts become the background: black under light ink, white under dark ink.
    ink = float((grey * alpha).sum() / alpha.sum()) if alpha.sum() else 0.0
    background = 0.0 if ink > 127.5 else 255.0
    return np.asarray(grey * alpha + background * (1.0 - alpha))


def to_mnist(grey: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """A digit of any size (grey levels 0-255) as MNIST draws it: (28, 28) uint8, white on black."""
    x = np.asarray(grey, dtype=np.float64)
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    background = float(np.median(border))
    if background > 127.5:  # dark ink on light paper: MNIST's digits are light on dark
        x, background = 255.0 - x, 255.0 - background
    ink = np.clip(x - background, 0.0, None)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise ImageError(
            f"shows no digit: its ink and background differ by {peak:.0f} of 255 grey levels "
            f"(at least {MIN_CONTRAST} needed)"
        )
    ink = ink * (255.0 / peak)
    ink[ink < FLOOR * 255.0] = 0.0
    rows = np.flatnonzero((ink >= INK * 255.0).any(axis=1))
    cols = np.flatnonzero((ink >= INK * 255.0).any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return _centre(_into_box(crop))


def _into_box(crop: F64) -> F64:
    """Scaled so that its longer side is BOX pixels, keeping the aspect ratio (anti-aliased)."""
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = Image.fromarray(crop.astype(np.float32), mode="F").resize(
        size, Image.Resampling.LANCZOS
    )
    return np.clip(np.asarray(resized, dtype=np.float64), 0.0, 255.0)


def _centre(digit: F64) -> npt.NDArray[np.uint8]:
    """Placed in a 28x28 field with its centre of mass at the field's centre."""
    h, w = digit.shape
    mass = digit.sum()
    cy = float((digit.sum(axis=1) * np.arange(h)).sum() / mass)
    cx = float((digit.sum(axis=0) * np.arange(w)).sum() / mass)
    centre = SIDE / 2  # where MNIST has it: mean centre of mass 14.0, spread of a rounded shift
    top, left = round(centre - cy), round(centre - cx)
    field = np.zeros((SIDE, SIDE))
    # The part of the digit that lands inside the field (a lopsided digit may lose an edge).
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(SIDE, top + h), min(SIDE, left + w)
    field[y0:y1, x0:x1] = digit[y0 - top : y1 - top, x0 - left : x1 - left]
    field *= 255.0 / field.max()  # full range, as every MNIST digit (254 or 255 at its peak)
    return np.asarray(np.rint(field), dtype=np.uint8)
