"""Image preprocessing of the reference deployment, free of Triton so it can be tested alone.

One row is the bytes of one JPEG or PNG, zero-padded by the client to the batch's longest
row; JPEG and PNG decoders stop at their end marker, so the padding is never read.
"""

import cv2
import numpy as np

SIZE = 224
# ImageNet statistics, in RGB order, applied to pixels scaled to [0, 1].
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class DecodeError(ValueError):
    """A row that is not an image; fails only the request it came in."""


def decode(row: np.ndarray) -> np.ndarray:
    """Bytes of one image to a BGR uint8 array."""
    nonzero = np.flatnonzero(row)
    if nonzero.size == 0:
        raise DecodeError(f"empty image (0 bytes of data in a row of {row.size})")
    image = cv2.imdecode(row, cv2.IMREAD_COLOR)
    if image is None:
        head = bytes(row[:8]).hex(" ")
        raise DecodeError(f"not a decodable JPEG or PNG ({int(nonzero[-1]) + 1} bytes, starting {head})")
    return image


def preprocess(row: np.ndarray) -> np.ndarray:
    """Bytes of one image to the classifier's input: FP32 [3, 224, 224], normalized RGB."""
    rgb = cv2.cvtColor(decode(row), cv2.COLOR_BGR2RGB)
    resized = cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    scaled = resized.astype(np.float32) * np.float32(1 / 255)
    return ((scaled - MEAN) / STD).transpose(2, 0, 1)


def preprocess_rows(rows: np.ndarray) -> np.ndarray:
    """A [n, bytes] batch of rows to [n, 3, 224, 224]; DecodeError names the failing row."""
    out = np.empty((len(rows), 3, SIZE, SIZE), dtype=np.float32)
    for index, row in enumerate(rows):
        try:
            out[index] = preprocess(row)
        except DecodeError as error:
            raise DecodeError(f"row {index}: {error}") from None
    return out
