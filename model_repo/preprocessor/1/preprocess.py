"""Image preprocessing of the reference deployment, free of Triton so it can be tested alone.

One row is the bytes of one JPEG or PNG, zero-padded by the client to the batch's longest
row; JPEG and PNG decoders stop at their end marker, so the padding is never read.

Two implementations with the same output (to float tolerance):

- ``preprocess``: one image, step by step, as the seed deployment did it: decode, BGR to
  RGB, resize, scale, normalize, HWC to CHW. The reference, and the baseline profile's.
- ``preprocess_rows``: a batch at once. Decoding is most of the cost and is per image;
  everything after it works on the whole batch. Each image is resized straight into one
  uint8 batch (resizing works per channel, so it commutes with the BGR to RGB swap), and one
  multiply-add pass per channel then swaps, scales, normalizes and lays out CHW into the
  output: no per-image float arrays, no colour conversion, no extra copies.
"""

import cv2
import numpy as np

SIZE = 224
# ImageNet statistics, in RGB order, applied to pixels scaled to [0, 1].
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# (x / 255 - MEAN) / STD as one multiply-add per pixel.
SCALE = (1 / (255 * STD)).astype(np.float32)
SHIFT = (-MEAN / STD).astype(np.float32)


class DecodeError(ValueError):
    """A row that is not an image; fails only the request it came in."""


def decode(row: np.ndarray) -> np.ndarray:
    """Bytes of one image to a BGR uint8 array."""
    image = cv2.imdecode(row, cv2.IMREAD_COLOR) if row.size else None
    if image is None:
        nonzero = np.flatnonzero(row)
        if nonzero.size == 0:
            raise DecodeError(f"empty image (0 bytes of data in a row of {row.size})")
        head = bytes(row[:8]).hex(" ")
        raise DecodeError(f"not a decodable JPEG or PNG ({int(nonzero[-1]) + 1} bytes, starting {head})")
    return image


def decode_row_into(row: np.ndarray, pixels: np.ndarray, rgb: bool = False) -> None:
    """One row decoded and resized into ``pixels`` ([224, 224, 3] uint8, BGR, or RGB with
    ``rgb``: swapped in place once resized, a quarter of the pixels of a swap before). OpenCV
    lets go of the GIL in each step, so rows decode in parallel on threads."""
    cv2.resize(decode(row), (SIZE, SIZE), dst=pixels, interpolation=cv2.INTER_LINEAR)
    if rgb:
        cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB, dst=pixels)


def decode_into(rows: np.ndarray, batch: np.ndarray, rgb: bool = False) -> None:
    """Each row decoded and resized into ``batch`` ([n, 224, 224, 3]), as ``decode_row_into``."""
    for index, row in enumerate(rows):
        try:
            decode_row_into(row, batch[index], rgb)
        except DecodeError as error:
            raise DecodeError(f"row {index}: {error}") from None


def normalize_into(batch: np.ndarray, out: np.ndarray) -> None:
    """[n, 224, 224, 3] BGR uint8 to [n, 3, 224, 224] normalized RGB float32, in ``out``."""
    for channel in range(3):
        plane = out[:, channel]
        np.multiply(batch[..., 2 - channel], SCALE[channel], out=plane)
        plane += SHIFT[channel]


def preprocess_rows(rows: np.ndarray) -> np.ndarray:
    """A [n, bytes] batch of rows to [n, 3, 224, 224]; DecodeError names the failing row."""
    batch = np.empty((len(rows), SIZE, SIZE, 3), dtype=np.uint8)
    decode_into(rows, batch)
    out = np.empty((len(rows), 3, SIZE, SIZE), dtype=np.float32)
    normalize_into(batch, out)
    return out


def preprocess(row: np.ndarray) -> np.ndarray:
    """Bytes of one image to the classifier's input: FP32 [3, 224, 224], normalized RGB."""
    rgb = cv2.cvtColor(decode(row), cv2.COLOR_BGR2RGB)
    resized = cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    scaled = resized.astype(np.float32) * np.float32(1 / 255)
    return ((scaled - MEAN) / STD).transpose(2, 0, 1)
