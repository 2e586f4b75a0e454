"""Pictures of digits brought into MNIST's form (core.digit_image): MNIST's own digits, drawn large
and dark on a light page somewhere off-centre, come back as MNIST has them; the steps (inversion,
20x20 box keeping the aspect, centre of mass at the centre, transparency) one by one; every
refusal names the problem."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.digit_image import ImageError, batch, decode_png, to_mnist
from worker.engine.data import load_mnist


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    a = a.astype(np.float64)
    m = a.sum()
    return float(a.sum(axis=1) @ np.arange(a.shape[0]) / m), float(
        a.sum(axis=0) @ np.arange(a.shape[1]) / m
    )


@pytest.fixture(scope="module")
def mnist_test(tmp_path_factory) -> np.ndarray:
    return load_mnist(tmp_path_factory.mktemp("mnist")).x_test[:200]


def test_mnist_digits_drawn_large_on_paper_come_back_as_mnist_has_them(mnist_test):
    # MNIST's centres of mass sit at 14.0 (index coordinates), spread as a rounded shift's.
    com = np.array([centre_of_mass(x) for x in mnist_test])
    assert np.abs(com.mean(axis=0) - 14.0).max() < 0.05
    correlations = []
    for x in mnist_test:
        big = Image.fromarray(x.astype(np.float32), mode="F").resize(
            (280, 280), Image.Resampling.BICUBIC
        )
        page = np.full((500, 600), 255.0)  # dark ink on a light page, far from its centre
        page[30:310, 250:530] = 255.0 - np.clip(np.asarray(big), 0, 255)
        back = to_mnist(page)
        assert back.shape == (28, 28) and back.dtype == np.uint8 and back.max() == 255
        assert np.abs(np.subtract(centre_of_mass(back), centre_of_mass(x))).max() < 1.0
        correlations.append(np.corrcoef(x.ravel(), back.ravel())[0, 1])
    assert np.median(correlations) > 0.95 and np.percentile(correlations, 5) > 0.75


def test_box_keeps_the_aspect_and_the_centre_of_mass_is_centred():
    bar = np.zeros((300, 200))
    bar[20:220, 10:40] = 255  # a tall bar, 200 x 30, light on dark, in a corner
    x = to_mnist(bar)
    rows = np.flatnonzero(x.max(axis=1) > 127)
    cols = np.flatnonzero(x.max(axis=0) > 127)
    assert len(rows) == 20 and 2 <= len(cols) <= 4  # 200:30 scaled to 20:3
    cy, cx = centre_of_mass(x)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_light_background_is_inverted_and_its_level_removed():
    grey = np.full((100, 100), 200.0)  # grey paper
    grey[30:70, 45:55] = 40.0  # darker ink
    x = to_mnist(grey)
    assert x[0, 0] == 0 and x.max() == 255  # background black, ink stretched to white
    dark = 255.0 - grey  # the same picture already light on dark
    assert np.array_equal(to_mnist(dark), x)


def test_transparent_pixels_are_background_whatever_the_ink():
    for ink in ((0, 0, 0, 255), (255, 255, 255, 255)):
        image = Image.new("RGBA", (120, 120), (0, 0, 0, 0))
        ImageDraw.Draw(image).line([(60, 10), (60, 110)], fill=ink, width=12)
        x = to_mnist(decode_png(png(image), 10**6))
        assert x.max() == 255 and x[:, :10].max() == 0 and x[:, 18:].max() == 0
        assert x[5:23, 14].min() > 200  # the line, 20 pixels tall, down the middle


def test_sixteen_bit_and_palette_pngs_decode_to_the_same_grey():
    grey = np.zeros((40, 30), np.uint8)
    grey[5:35, 12:18] = 255
    eight = decode_png(png(Image.fromarray(grey)), 10**6)
    sixteen = decode_png(png(Image.fromarray(grey.astype(np.uint16) * 257)), 10**6)
    palette = decode_png(png(Image.fromarray(grey).convert("P")), 10**6)
    assert np.allclose(eight, sixteen) and np.allclose(eight, palette)
    assert np.array_equal(to_mnist(eight), to_mnist(sixteen))


@pytest.mark.parametrize(
    "data, words",
    [
        (b"\x89PNG\r\n\x1a\n broken", "not a PNG"),
        (b"GIF89a", "not a PNG"),
        (png(Image.new("L", (2001, 1000))), "2001x1000 pixels, more than the 2000000"),
    ],
)
def test_bad_pngs_are_named(data, words):
    with pytest.raises(ImageError, match=words):
        decode_png(data, 2_000_000)


def test_a_png_past_pillows_own_bomb_limit_is_refused_before_decoding():
    """A PNG header may claim any size; past twice Pillow's MAX_IMAGE_PIXELS, Pillow refuses it
    as it opens it, before labq's own (lower) limit is even asked."""
    header = png(Image.new("1", (1, 1)))
    # IHDR of a 20000 x 20000 picture (400 million pixels) with its CRC recomputed.
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 1, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    bomb = header[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    bomb += header[33:]
    with pytest.raises(ImageError, match="has more than the 4000000 pixels allowed"):
        decode_png(bomb, 4_000_000)


def test_a_truncated_png_is_damaged():
    data = png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)))
    with pytest.raises(ImageError, match="damaged PNG"):
        decode_png(data[: len(data) // 2], 10**6)


def test_a_blank_picture_shows_no_digit():
    with pytest.raises(ImageError, match="shows no digit"):
        to_mnist(np.full((50, 50), 255.0))
    faint = np.full((50, 50), 250.0)
    faint[20:30, 20:30] = 235.0  # 15 grey levels: paper texture, not a digit
    with pytest.raises(ImageError, match="differ by 15 of 255"):
        to_mnist(faint)


def test_batch_checks_every_image_and_names_the_first_bad_one():
    good = np.zeros((28, 28)).tolist()
    assert batch([good, good]).shape == (2, 28, 28)
    cases = [
        ([good, good[:27]], (1,), "is 27 rows"),
        ([good, [row[:27] for row in good]], (1,), "row 0 is 27 values"),
        ([good, 7], (1,), "is int"),
        ([[*good[:3], [0] * 27 + ["x"], *good[4:]]], (0,), "row 3, column 27: 'x' is not a number"),
        ([[*good[:3], [0] * 27 + [False], *good[4:]]], (0,), "False is not a number"),
        ([[*good[:3], [0] * 27 + [255.5], *good[4:]]], (0,), "row 3, column 27: 255.5"),
        ([[*good[:3], [float("nan")] + [0] * 27, *good[4:]]], (0,), "row 3, column 0: nan"),
        ([good, [*good[:3], [10**400] + [0] * 27, *good[4:]]], (1,), "number too large"),
    ]
    for images, where, words in cases:
        with pytest.raises(ImageError, match=words) as caught:
            batch(images)
        assert caught.value.where == where
