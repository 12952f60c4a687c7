"""Which uploads the preprocessor can decode.

Before Triton is called, every file must start as a JPEG or PNG does: that costs nothing and
refuses text, PDFs and empty files with a 400 naming them, without Triton seeing the request.
A file that starts right but is damaged (truncated, corrupt) is found only by decoding it, as
dear here as in the preprocessor; so the gateway decodes only when Triton has refused a call,
to name the files that made it fail.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from perf.gateway.errors import GatewayError
from perf.gateway.uploads import Upload

SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # JPEG's SOI marker, PNG's file signature
SIGNATURE_BYTES = max(len(signature) for signature in SIGNATURES)
NAMED_IN_DETAIL = 10


def not_images(uploads: Sequence[Upload]) -> list[int]:
    """Positions of the uploads that do not start as a JPEG or PNG."""
    return [i for i, upload in enumerate(uploads) if not upload.head(SIGNATURE_BYTES).startswith(SIGNATURES)]


def undecodable(uploads: Sequence[Upload], positions: Sequence[int]) -> list[int]:
    """Those of ``positions`` whose bytes OpenCV cannot decode, with the preprocessor's call."""
    return [i for i in positions if _decode(uploads[i].joined()) is None]


def _decode(data: bytes) -> np.ndarray | None:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def refusal(uploads: Sequence[Upload], positions: Sequence[int]) -> GatewayError:
    """A 400 naming the files (1-based, as a user counts them) that are not decodable images."""
    named = [f"file {i + 1} ({uploads[i].name!r})" for i in positions[:NAMED_IN_DETAIL]]
    more = f" and {len(positions) - NAMED_IN_DETAIL} more" if len(positions) > NAMED_IN_DETAIL else ""
    return GatewayError(
        400,
        "not_an_image",
        f"not a decodable JPEG or PNG image: {', '.join(named)}{more}",
        files=[{"position": i + 1, "file": uploads[i].name} for i in positions],
    )
