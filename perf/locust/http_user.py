"""Triton over HTTP: KServe v2 with Triton's binary tensor extension, on geventhttpclient (the
HTTP client Locust's FastHttpUser stands on). The request body is built once by tritonclient;
each request is then one POST of those bytes, and the outputs come back binary."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import tritonclient.http as httpclient
from geventhttpclient import HTTPClient
from tritonclient.utils import np_to_triton_dtype

from perf.images import read_and_pad_images
from perf.locust.user import Prepared, RequestFailed, TritonUser

HEADER_LENGTH = "Inference-Header-Content-Length"


def base_url(host: str) -> str:
    """``127.0.0.1:8000`` or ``http://127.0.0.1:8000`` to the latter."""
    return host if "://" in host else f"http://{host}"


def error_text(status: int, body: bytes) -> str:
    """The server's own explanation: the ``error`` of a JSON body, else the body itself."""
    text = body.decode(errors="replace").strip()
    try:
        message = json.loads(text)
    except ValueError:
        message = None
    if isinstance(message, dict):
        text = str(message.get("error") or message.get("detail") or message)
    return f"HTTP {status}: {text[:500]}"


class HttpPoster(TritonUser):
    """A user that POSTs prepared bodies to one path over geventhttpclient."""

    abstract = True
    path: str

    def connect(self, connections: int) -> None:
        url = urlsplit(base_url(self.host))
        self.client = HTTPClient(
            url.hostname, url.port, concurrency=connections, ssl=url.scheme == "https",
            connection_timeout=self.timeout, network_timeout=self.timeout,
        )  # fmt: skip

    def send(self, request: Prepared) -> int:
        body, headers = request.body
        try:
            response = self.client.post(self.path, body=body, headers=headers)
            answer = response.read()
        except OSError as error:  # refused, reset, timed out
            raise RequestFailed(f"{type(error).__name__}: {error}") from None
        if response.status_code != 200:
            raise RequestFailed(error_text(response.status_code, answer))
        return len(answer)

    def close(self) -> None:
        self.client.close()


class TritonHttpUser(HttpPoster):
    """Calls a model with encoded images as one UINT8 tensor in binary form."""

    abstract = True
    request_type = "http"
    host = "http://127.0.0.1:8000"

    def on_start(self) -> None:
        self.path = f"/v2/models/{self.environment.parsed_options.model}/infer"
        super().on_start()

    def prepare(self, images: list[bytes]) -> Prepared:
        return self.prepare_arrays({"RAW_IMAGE": read_and_pad_images(images)})

    def model_config(self) -> dict[str, Any]:
        response = self.client.get(f"/v2/models/{self.environment.parsed_options.model}/config")
        answer = response.read()
        if response.status_code != 200:
            raise RequestFailed(error_text(response.status_code, answer))
        return json.loads(answer)

    def prepare_arrays(self, arrays: dict[str, np.ndarray]) -> Prepared:
        tensors = []
        for name, array in arrays.items():
            tensor = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array, binary_data=True)
            tensors.append(tensor)
        body, json_size = httpclient.InferenceServerClient.generate_request_body(tensors)
        headers = {"Content-Type": "application/octet-stream"}
        if json_size is not None:
            headers[HEADER_LENGTH] = str(json_size)
        return Prepared((body, headers), len(body))
