"""Classify images through the ensemble over gRPC, as the reference deployment's clients do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from perf.images import read_and_pad_images

INPUT, OUTPUT = "RAW_IMAGE", "output__0"


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float
    probabilities: list[float]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def read_labels(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def infer_logits(
    client: grpcclient.InferenceServerClient, model: str, images: list[bytes], max_batch: int, timeout: float = 30
) -> np.ndarray:
    """Logits for every image, sent in calls of at most ``max_batch`` rows."""
    parts = []
    for start in range(0, len(images), max_batch):
        batch = read_and_pad_images(images[start : start + max_batch])
        tensor = grpcclient.InferInput(INPUT, list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch)
        result = client.infer(
            model, [tensor], outputs=[grpcclient.InferRequestedOutput(OUTPUT)], client_timeout=timeout
        )
        parts.append(result.as_numpy(OUTPUT))
    return np.concatenate(parts)


def classify(url: str, model: str, images: list[bytes], labels: list[str]) -> list[Prediction]:
    with grpcclient.InferenceServerClient(url) as client:
        try:
            max_batch = client.get_model_config(model, as_json=True)["config"].get("max_batch_size", 0)
            logits = infer_logits(client, model, images, max(int(max_batch), 1))
        except InferenceServerException as error:
            raise RuntimeError(f"Triton at {url}: {error.message()}") from None
    probabilities = softmax(logits)
    return [
        Prediction(int(p.argmax()), labels[int(p.argmax())], float(p.max()), p.round(4).tolist()) for p in probabilities
    ]
