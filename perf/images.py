"""Images: the synthetic classes the reference classifier learns, and the client-side packing
of image files into the one padded UINT8 array the ensemble takes."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

# Five classes a small CNN can tell apart by shape and texture, whatever the colours.
CLASSES = ("circle", "square", "triangle", "stripes", "checkerboard")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _contrasting_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    background = rng.integers(0, 256, 3)
    foreground = rng.integers(0, 256, 3)
    while np.abs(foreground.astype(int) - background).sum() < 200:
        foreground = rng.integers(0, 256, 3)
    return background, foreground


def synthetic_image(label: int, rng: np.random.Generator, height: int = 480, width: int = 640) -> np.ndarray:
    """A BGR image of class ``CLASSES[label]`` on a noisy background, at a random place,
    size and orientation."""
    background, foreground = _contrasting_colours(rng)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = background
    fg = tuple(int(c) for c in foreground)
    short = min(height, width)
    cx, cy = rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height
    radius = rng.uniform(0.22, 0.36) * short
    angle = rng.uniform(0, 2 * np.pi)
    name = CLASSES[label]
    if name == "circle":
        cv2.circle(image, (int(cx), int(cy)), int(radius), fg, -1, cv2.LINE_AA)
    elif name in ("square", "triangle"):
        corners = 4 if name == "square" else 3
        angles = angle + np.arange(corners) * 2 * np.pi / corners
        points = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)
        cv2.fillPoly(image, [points.round().astype(np.int32)], fg, cv2.LINE_AA)
    elif name == "stripes":
        period = rng.uniform(0.06, 0.14) * short
        ys, xs = np.mgrid[0:height, 0:width]
        phase = (xs * np.cos(angle) + ys * np.sin(angle)) / period
        image[(phase % 1.0) < 0.5] = foreground
    else:  # checkerboard
        cell = rng.uniform(0.06, 0.14) * short
        ys, xs = np.mgrid[0:height, 0:width]
        image[((xs // cell + ys // cell) % 2) == 0] = foreground
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(4, 16))
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def encode(image: np.ndarray, fmt: str = ".jpg", quality: int = 90) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == ".jpg" else []
    ok, buffer = cv2.imencode(fmt, image, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode an image as {fmt}")
    return buffer.tobytes()


def synthetic_set(count: int, seed: int, height: int = 480, width: int = 640) -> tuple[list[bytes], list[int]]:
    """``count`` JPEGs cycling through the classes, with their labels."""
    rng = np.random.default_rng(seed)
    labels = [i % len(CLASSES) for i in range(count)]
    return [encode(synthetic_image(label, rng, height, width)) for label in labels], labels


def write_synthetic_set(folder: Path, count: int, seed: int) -> list[Path]:
    """Write a labelled set as ``<class>_<n>.jpg`` files: realistic-size load-test payloads."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (data, label) in enumerate(zip(*synthetic_set(count, seed), strict=True)):
        path = folder / f"{CLASSES[label]}_{index:04d}.jpg"
        path.write_bytes(data)
        paths.append(path)
    return paths


def label_of(path: Path) -> int:
    """The class index a synthetic file's name carries."""
    return CLASSES.index(path.stem.rsplit("_", 1)[0])


def image_files(folder: Path) -> list[Path]:
    """The JPEG and PNG files of a folder, sorted; a clear error when there are none."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no .jpg, .jpeg or .png files in {folder}")
    return files


def read_and_pad_images(images: Iterable[bytes]) -> np.ndarray:
    """Encoded images to the ensemble's RAW_IMAGE: one UINT8 row each, zero-padded to the
    longest, as the seed's FastAPI client does."""
    blobs = list(images)
    if not blobs:
        raise ValueError("no images to send")
    batch = np.zeros((len(blobs), max(len(b) for b in blobs)), dtype=np.uint8)
    for row, blob in zip(batch, blobs, strict=True):
        row[: len(blob)] = np.frombuffer(blob, dtype=np.uint8)
    return batch
