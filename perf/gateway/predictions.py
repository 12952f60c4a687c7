"""The answer to an upload: one entry per file, in upload order, from the ensemble's logits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from perf.client import softmax
from perf.gateway.uploads import Upload


def predictions(uploads: Sequence[Upload], logits: np.ndarray, labels: Sequence[str], top_k: int) -> list[dict]:
    """Per file: its name, the predicted class index and label, the probability of every label
    (softmax of the logits) and the ``top_k`` most probable classes."""
    probabilities = softmax(logits.astype(np.float64))
    ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k].tolist()
    rounded = probabilities.round(6).tolist()
    return [_entry(upload.name, p, order, labels) for upload, p, order in zip(uploads, rounded, ranked, strict=True)]


def _entry(name: str, p: list[float], order: list[int], labels: Sequence[str]) -> dict[str, Any]:
    best = order[0]
    return {
        "file": name,
        "index": best,
        "label": labels[best],
        "probability": p[best],
        "probabilities": dict(zip(labels, p, strict=True)),
        "top_k": [{"index": i, "label": labels[i], "probability": p[i]} for i in order],
    }
