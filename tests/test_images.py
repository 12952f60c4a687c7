"""Client-side packing and the served preprocessing, without a server."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from perf.images import CLASSES, encode, read_and_pad_images, synthetic_image, synthetic_set
from perf.modelbuild import load_preprocess

from .conftest import REPO

preprocess = load_preprocess(REPO)


def test_rows_are_zero_padded_to_the_longest_image() -> None:
    batch = read_and_pad_images([b"\x01\x02\x03", b"\x04"])
    assert batch.dtype == np.uint8
    assert batch.tolist() == [[1, 2, 3], [4, 0, 0]]


def test_no_images_is_an_error() -> None:
    with pytest.raises(ValueError, match="no images"):
        read_and_pad_images([])


def test_padding_does_not_change_what_decodes() -> None:
    jpegs, _ = synthetic_set(2, seed=1)
    batch = read_and_pad_images([jpegs[0], jpegs[1] + b"\x00" * 5000])
    alone = read_and_pad_images([jpegs[0]])
    np.testing.assert_array_equal(preprocess.preprocess_rows(batch)[0], preprocess.preprocess_rows(alone)[0])
    np.testing.assert_array_equal(preprocess.preprocess(batch[0]), preprocess.preprocess(alone[0]))


def test_preprocess_is_rgb_resized_scaled_and_normalized() -> None:
    # A uniform BGR image of known colour: every output pixel is (rgb/255 - mean) / std.
    bgr = np.zeros((300, 500, 3), np.uint8)
    bgr[:] = (10, 100, 200)
    out = preprocess.preprocess(np.frombuffer(encode(bgr, ".png"), np.uint8))
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    expected = (np.array([200, 100, 10]) / 255 - preprocess.MEAN) / preprocess.STD
    np.testing.assert_allclose(out[:, 112, 112], expected, rtol=1e-5)
    assert np.ptp(out.reshape(3, -1), axis=1).max() == 0


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (np.zeros(0, np.uint8), "empty image"),
        (np.zeros(64, np.uint8), "empty image"),
        (np.frombuffer(b"GIF89a not really" + bytes(10), np.uint8), "not a decodable JPEG or PNG"),
    ],
)
def test_rows_that_are_not_images_are_named(row: np.ndarray, message: str) -> None:
    with pytest.raises(preprocess.DecodeError, match=message):
        preprocess.preprocess(row)


def test_the_failing_row_is_named_in_a_batch() -> None:
    jpegs, _ = synthetic_set(1, seed=2)
    batch = read_and_pad_images([jpegs[0], b"garbage"])
    with pytest.raises(preprocess.DecodeError, match="row 1: not a decodable"):
        preprocess.preprocess_rows(batch)


def test_synthetic_classes_differ_and_are_reproducible() -> None:
    first = [synthetic_image(label, np.random.default_rng(7), 120, 160) for label in range(len(CLASSES))]
    again = [synthetic_image(label, np.random.default_rng(7), 120, 160) for label in range(len(CLASSES))]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert len({img.tobytes() for img in first}) == len(CLASSES)


def test_the_batched_preprocessing_and_the_pixels_match_the_straightforward_one_for_every_image() -> None:
    # preprocess() is the seed's step-by-step version, one image at a time: the reference.
    rng = np.random.default_rng(11)
    images = [encode(synthetic_image(i % len(CLASSES), rng)) for i in range(24)]  # 640x480 JPEGs
    images += [encode(synthetic_image(i, rng, h, w), ext) for i, (h, w, ext) in
               enumerate([(100, 80, ".png"), (1080, 1920, ".jpg"), (224, 224, ".jpg"), (50, 700, ".png")])]  # fmt: skip
    gray = cv2.cvtColor(synthetic_image(0, rng), cv2.COLOR_BGR2GRAY)
    images.append(encode(gray))  # a greyscale JPEG decodes to three equal channels
    rows = read_and_pad_images(images)
    batch = preprocess.preprocess_rows(rows)
    pixels = np.empty((len(rows), preprocess.SIZE, preprocess.SIZE, 3), np.uint8)
    preprocess.decode_into(rows, pixels, rgb=True)  # the tuned profile's hand-off
    handed = (pixels * preprocess.SCALE + preprocess.SHIFT).transpose(0, 3, 1, 2)  # as model_pixels.pt does
    for index, blob in enumerate(images):
        expected = preprocess.preprocess(np.frombuffer(blob, np.uint8))
        np.testing.assert_allclose(batch[index], expected, rtol=1e-5, atol=1e-5, err_msg=f"image {index}")
        np.testing.assert_allclose(handed[index], expected, rtol=1e-5, atol=1e-5, err_msg=f"pixels of image {index}")
