"""The ensemble on Triton, called the way a gateway must: over one asyncio gRPC channel, split
into calls Triton accepts, with bounded retries of transient failures, all within one deadline,
and every failure turned into an answer a user can act on.

The uploads' bytes are copied once on their way to Triton. ``infer_request`` writes the
serialized ``ModelInferRequest`` itself: the small protobuf header (model, input shape, output),
then the padded ``RAW_IMAGE`` rows as its ``raw_input_contents``, joined in one pass from the
views ``uploads.py`` kept into the body chunks; the channel sends those bytes as they are.
Counted from the ASGI body chunks to the bytes handed to gRPC (grpcio then copies them into its
own buffer either way, as uvicorn copies the socket's bytes into those chunks):

- before: 5 or 6 copies of every byte: slicing each part out of its chunk (none for a whole
  chunk), joining a file's slices (none for a file in one slice), padding it into the numpy
  batch, ``InferInput.set_data_from_numpy`` (``tobytes``), the protobuf field (upb copies
  bytes into its arena), and ``SerializeToString``;
- now: 1 copy, the join into the request (2 for the bytes of a file's pieces under 1 KiB,
  which ``uploads.py`` copies out of their chunk rather than hold a view of each).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions, service_pb2, service_pb2_grpc
from tritonclient.utils import triton_to_np_dtype

from perf.client import INPUT, OUTPUT
from perf.gateway.errors import GatewayError

# Rows are padded to the longest of their call: a call holds at most this many bytes of them,
# so one large photo does not make 63 small ones as large as itself.
MAX_CALL_BYTES = 64 * 2**20
# Calls of one request in flight at once: a large upload keeps Triton's batcher fed without
# holding all its padded copies in memory, or crowding out other users' requests.
CALLS_IN_FLIGHT = 4
BACKOFF_S = 0.1  # first retry after 50 to 100 ms, doubling
HEALTH_TIMEOUT_S = 5  # a health probe must answer even when Triton hangs

SERVICE = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
# The raw_input_contents field's key: its number, and wire type 2 (length-delimited bytes).
RAW_INPUT_KEY = bytes([service_pb2.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number << 3 | 2])
TRANSIENT = grpc.StatusCode.UNAVAILABLE  # refused connection, server shutting down, queue full
# Triton down, the model unknown or with no ready version, time up: the gateway's own answers.
GATEWAY_ERRORS = (TRANSIENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.DEADLINE_EXCEEDED)

Image = Sequence[bytes | memoryview]  # an encoded image, as the pieces its bytes arrived in
T = TypeVar("T")


class CallRefused(Exception):
    """Triton refused an inference call for its content (the preprocessor's error, typically):
    ``positions`` are the images that were in it."""

    def __init__(self, positions: list[int], message: str) -> None:
        super().__init__(message)
        self.positions = positions
        self.message = message


def plan_calls(sizes: Sequence[int], max_batch: int, max_bytes: int = MAX_CALL_BYTES) -> list[list[int]]:
    """Image positions grouped into calls of at most ``max_batch`` rows and ``max_bytes`` of
    padded rows (a larger image goes alone). Grouped by size, so rows padded together are of
    similar length."""
    calls: list[list[int]] = []
    current: list[int] = []
    for position in sorted(range(len(sizes)), key=sizes.__getitem__):
        # Ascending sizes: the newest row is the longest, the one the others are padded to.
        if current and (len(current) == max_batch or (len(current) + 1) * sizes[position] > max_bytes):
            calls.append(current)
            current = []
        current.append(position)
    if current:
        calls.append(current)
    return calls


def _varint(value: int) -> bytes:
    """Protobuf's base-128 varint: 7 bits a byte, low first, the high bit saying more follow."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def infer_request(model: str, images: Sequence[Image], sizes: Sequence[int]) -> bytes:
    """The serialized ``ModelInferRequest`` for ``images`` (their byte ``sizes`` given): one
    UINT8 row each, zero-padded to the longest, as ``RAW_IMAGE``; asks for ``OUTPUT``.

    Protobuf reads a message's fields in any order and concatenated messages as one, so the
    header is serialized by protobuf and the rows are written after it, each image's pieces
    joined straight into place: the one copy of the uploads on the way to Triton. The bytes
    are those tritonclient's ``infer`` sends for the same padded rows, byte for byte.
    """
    width = max(sizes)
    tensor = service_pb2.ModelInferRequest.InferInputTensor(name=INPUT, datatype="UINT8", shape=[len(images), width])
    header = service_pb2.ModelInferRequest(
        model_name=model,
        inputs=[tensor],
        outputs=[service_pb2.ModelInferRequest.InferRequestedOutputTensor(name=OUTPUT)],
    ).SerializeToString()
    zeros = memoryview(bytes(width))
    parts: list[bytes | memoryview] = [header, RAW_INPUT_KEY, _varint(len(images) * width)]
    for image, size in zip(images, sizes, strict=True):
        parts += image
        parts.append(zeros[: width - size])
    return b"".join(parts)


def _logits(response: service_pb2.ModelInferResponse) -> np.ndarray:
    output = response.outputs[0]  # the one output asked for
    return np.frombuffer(response.raw_output_contents[0], triton_to_np_dtype(output.datatype)).reshape(output.shape)


def _channel_args() -> list[tuple[str, int]]:
    """tritonclient's own channel settings, with reconnection backoff capped at 1 s: gRPC's
    default lets the wait between attempts grow to 2 minutes while Triton is down, and a
    restarted Triton would go unused that long."""
    keepalive = KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


class Ensemble:
    """One model on one Triton, over one channel that every request of the gateway shares.

    Create it inside the running event loop (the app's lifespan): the channel belongs to it.
    """

    def __init__(
        self, url: str, model: str, timeout: float, retries: int, on_retry: Callable[[], object] = lambda: None
    ) -> None:
        self.url = url
        self.model = model
        self.timeout = timeout
        self.retries = retries
        self.on_retry = on_retry
        self._channel = grpc.aio.insecure_channel(url, options=_channel_args())
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        # ModelInfer with the request already serialized (infer_request): no serializer.
        self._model_infer = self._channel.unary_unary(
            f"/{SERVICE}/ModelInfer", response_deserializer=service_pb2.ModelInferResponse.FromString
        )
        self._max_batch: int | None = None  # read from Triton at the first request

    async def close(self) -> None:
        await self._channel.close()

    async def infer(self, images: Sequence[Image]) -> tuple[np.ndarray, float]:
        """Logits for every image in order, and the seconds spent waiting on Triton.

        GatewayError for Triton down (503), the model not ready (503) or the deadline passed
        (504); CallRefused when Triton refused a call for what it held.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        started = time.perf_counter()
        sizes = [sum(len(piece) for piece in image) for image in images]
        try:
            async with asyncio.timeout_at(deadline):
                calls = plan_calls(sizes, await self._max_batch_size(deadline))
                gate = asyncio.Semaphore(CALLS_IN_FLIGHT)
                try:
                    async with asyncio.TaskGroup() as group:
                        tasks = [
                            group.create_task(self._infer_call(images, sizes, call, gate, deadline)) for call in calls
                        ]
                except* (GatewayError, CallRefused) as failed:
                    raise failed.exceptions[0] from None
        except TimeoutError:
            raise self._timed_out(self.timeout) from None
        parts = [task.result() for task in tasks]
        logits = np.empty((len(images), parts[0].shape[1]), dtype=parts[0].dtype)
        for call, part in zip(calls, parts, strict=True):
            logits[call] = part
        return logits, time.perf_counter() - started

    async def health(self) -> dict[str, Any]:
        """Whether Triton is live and the model ready; ``ok`` False with a ``detail`` if not."""
        timeout = min(self.timeout, HEALTH_TIMEOUT_S)
        try:
            if not (await self._stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=timeout)).live:
                return {"ok": False, "triton": "not live", "detail": f"Triton at {self.url} is not live"}
            request = service_pb2.ModelReadyRequest(name=self.model)
            ready = (await self._stub.ModelReady(request, timeout=timeout)).ready
        except grpc.aio.AioRpcError as error:
            return {"ok": False, "triton": "down", "detail": self._gateway_error(error, timeout).detail}
        if not ready:
            detail = f"model {self.model!r} is not ready on Triton at {self.url}"
            return {"ok": False, "triton": "live", "model": "not ready", "detail": detail}
        return {"ok": True, "triton": "live", "model": "ready"}

    async def _max_batch_size(self, deadline: float) -> int:
        if self._max_batch is None:
            request = service_pb2.ModelConfigRequest(name=self.model)
            try:
                response = await self._call(self._stub.ModelConfig, deadline, request)
            except grpc.aio.AioRpcError as error:
                raise self._gateway_error(error, self.timeout) from None
            self._max_batch = max(response.config.max_batch_size, 1)
        return self._max_batch

    async def _infer_call(
        self, images: Sequence[Image], sizes: Sequence[int], call: list[int], gate: asyncio.Semaphore, deadline: float
    ) -> np.ndarray:
        async with gate:
            request = infer_request(self.model, [images[i] for i in call], [sizes[i] for i in call])
            try:
                response = await self._call(self._model_infer, deadline, request)
            except grpc.aio.AioRpcError as error:
                raise CallRefused(call, error.details() or "") from None
            return _logits(response)

    async def _call(self, method: Callable[..., Awaitable[T]], deadline: float, request: object) -> T:
        """``method`` with the time left as its gRPC deadline, retried after transient
        failures; GatewayError when Triton is down, the model not ready or time is up. Other
        refusals are raised as they are."""
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            try:
                return await method(request, timeout=max(deadline - loop.time(), 0.001))
            except grpc.aio.AioRpcError as error:
                if error.code() == TRANSIENT and attempt < self.retries:
                    attempt += 1
                    self.on_retry()
                    await asyncio.sleep(BACKOFF_S * 2 ** (attempt - 1) * random.uniform(0.5, 1))
                    continue
                if error.code() in GATEWAY_ERRORS:
                    self._max_batch = None  # Triton restarted or the model reloaded: read it again
                    raise self._gateway_error(error, self.timeout) from None
                raise

    def _gateway_error(self, error: grpc.aio.AioRpcError, timeout: float) -> GatewayError:
        message = error.details() or str(error.code())
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return GatewayError(
                503, "model_not_ready", f"model {self.model!r} is not ready on Triton at {self.url}: {message}"
            )
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return self._timed_out(timeout)
        if error.code() == TRANSIENT:
            return GatewayError(503, "triton_unavailable", f"Triton at {self.url} is unavailable: {message}")
        return GatewayError(502, "triton_error", f"Triton at {self.url} refused the request: {message}")

    def _timed_out(self, timeout: float) -> GatewayError:
        return GatewayError(504, "timeout", f"Triton at {self.url} did not answer within {timeout:g} s")
