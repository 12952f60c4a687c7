"""Triton over gRPC with tritonclient.grpc. grpcio must be told to cooperate with gevent before
any channel exists, hence the order of the imports."""

from __future__ import annotations

from typing import Any

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import numpy as np  # noqa: E402
import tritonclient.grpc as grpcclient  # noqa: E402
from tritonclient.utils import InferenceServerException, np_to_triton_dtype  # noqa: E402

from perf.images import read_and_pad_images  # noqa: E402
from perf.locust.user import Prepared, RequestFailed, TritonUser  # noqa: E402


class TritonGrpcUser(TritonUser):
    """Calls a model with encoded images as one UINT8 tensor, one channel per user, opened when
    the user starts and closed when it stops."""

    abstract = True
    request_type = "grpc"
    host = "127.0.0.1:8001"

    def prepare(self, images: list[bytes]) -> Prepared:
        return self.prepare_arrays({"RAW_IMAGE": read_and_pad_images(images)})

    def prepare_arrays(self, arrays: dict[str, np.ndarray]) -> Prepared:
        tensors = []
        for name, array in arrays.items():
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        return Prepared(tensors, sum(a.nbytes for a in arrays.values()))

    def model_config(self) -> dict[str, Any]:
        try:
            return self.client.get_model_config(self.request_name, as_json=True)["config"]
        except InferenceServerException as error:
            raise RequestFailed(str(error)) from None

    def connect(self, connections: int) -> None:
        self.client = grpcclient.InferenceServerClient(self.host)

    def send(self, request: Prepared) -> int:
        try:
            result = self.client.infer(self.request_name, request.body, client_timeout=self.timeout)
        except InferenceServerException as error:
            raise RequestFailed(str(error)) from None
        return sum(len(raw) for raw in result.get_response().raw_output_contents)

    def close(self) -> None:
        """Closes the channel and lets go of the client while the process is alive. Left to the
        garbage collector at exit, tritonclient's ``__del__`` closes the channel again, and under
        gevent that close can deadlock, holding a finished Locust worker open."""
        client, self.client = self.client, None
        client.close()
