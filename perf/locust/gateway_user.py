"""The gateway's ``POST /predict``: images uploaded as multipart files, as its users send them."""

from __future__ import annotations

import uuid

from perf.gateway.uploads import FIELD
from perf.locust.http_user import HttpPoster
from perf.locust.user import Prepared


def multipart(images: list[bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body with each image as a file of the field ``files``; its content type."""
    boundary = uuid.uuid4().hex
    parts = []
    for i, image in enumerate(images):
        kind = "png" if image.startswith(b"\x89PNG") else "jpeg"
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{FIELD}"; filename="image{i}.{kind}"\r\n'
                f"Content-Type: image/{kind}\r\n\r\n")  # fmt: skip
        parts.append(head.encode() + image + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class GatewayUser(HttpPoster):
    """Uploads ``--images-per-request`` images per request to the gateway."""

    abstract = True
    request_type = "POST"
    host = "http://127.0.0.1:8080"
    path = "/predict"

    def name(self) -> str:
        return self.path

    def prepare(self, images: list[bytes]) -> Prepared:
        body, content_type = multipart(images)
        return Prepared((body, {"Content-Type": content_type}), len(body))
