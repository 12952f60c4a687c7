"""The ensemble on Triton, called the way a gateway must: over one asyncio gRPC channel, split
into calls Triton accepts, with bounded retries of transient failures, all within one deadline,
and every failure turned into an answer a user can act on."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import tritonclient.grpc.aio as grpcaio
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions
from tritonclient.utils import InferenceServerException

from perf.client import INPUT, OUTPUT
from perf.gateway.errors import GatewayError
from perf.images import read_and_pad_images

# Rows are padded to the longest of their call: a call holds at most this many bytes of them,
# so one large photo does not make 63 small ones as large as itself.
MAX_CALL_BYTES = 64 * 2**20
# Calls of one request in flight at once: a large upload keeps Triton's batcher fed without
# holding all its padded copies in memory, or crowding out other users' requests.
CALLS_IN_FLIGHT = 4
BACKOFF_S = 0.1  # first retry after 50 to 100 ms, doubling
HEALTH_TIMEOUT_S = 5  # a health probe must answer even when Triton hangs

UNAVAILABLE = "StatusCode.UNAVAILABLE"  # refused connection, server shutting down, queue full
NOT_FOUND = "StatusCode.NOT_FOUND"  # model unknown or with no ready version
DEADLINE_EXCEEDED = "StatusCode.DEADLINE_EXCEEDED"

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
        self._client = grpcaio.InferenceServerClient(url, channel_args=_channel_args())
        self._max_batch: int | None = None  # read from Triton at the first request

    async def close(self) -> None:
        await self._client.close()

    async def infer(self, images: Sequence[bytes]) -> tuple[np.ndarray, float]:
        """Logits for every image in order, and the seconds spent waiting on Triton.

        GatewayError for Triton down (503), the model not ready (503) or the deadline passed
        (504); CallRefused when Triton refused a call for what it held.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        started = time.perf_counter()
        try:
            async with asyncio.timeout_at(deadline):
                calls = plan_calls([len(image) for image in images], await self._max_batch_size(deadline))
                gate = asyncio.Semaphore(CALLS_IN_FLIGHT)
                try:
                    async with asyncio.TaskGroup() as group:
                        tasks = [group.create_task(self._infer_call(images, call, gate, deadline)) for call in calls]
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
            if not await self._client.is_server_live(client_timeout=timeout):
                return {"ok": False, "triton": "not live", "detail": f"Triton at {self.url} is not live"}
            ready = await self._client.is_model_ready(self.model, client_timeout=timeout)
        except InferenceServerException as error:
            return {"ok": False, "triton": "down", "detail": self._gateway_error(error, timeout).detail}
        if not ready:
            detail = f"model {self.model!r} is not ready on Triton at {self.url}"
            return {"ok": False, "triton": "live", "model": "not ready", "detail": detail}
        return {"ok": True, "triton": "live", "model": "ready"}

    async def _max_batch_size(self, deadline: float) -> int:
        if self._max_batch is None:
            try:
                config = await self._call(self._client.get_model_config, deadline, self.model, as_json=True)
            except InferenceServerException as error:
                raise self._gateway_error(error, self.timeout) from None
            self._max_batch = max(int(config["config"].get("max_batch_size", 0)), 1)
        return self._max_batch

    async def _infer_call(
        self, images: Sequence[bytes], call: list[int], gate: asyncio.Semaphore, deadline: float
    ) -> np.ndarray:
        async with gate:
            rows = read_and_pad_images(images[i] for i in call)
            tensor = grpcaio.InferInput(INPUT, list(rows.shape), "UINT8")
            tensor.set_data_from_numpy(rows)
            del rows  # the tensor holds its own copy of the bytes
            outputs = [grpcaio.InferRequestedOutput(OUTPUT)]
            try:
                result = await self._call(self._client.infer, deadline, self.model, [tensor], outputs=outputs)
            except InferenceServerException as error:
                raise CallRefused(call, error.message()) from None
            return result.as_numpy(OUTPUT)

    async def _call(self, method: Callable[..., Awaitable[T]], deadline: float, *args: Any, **kwargs: Any) -> T:
        """``method`` with the time left as its gRPC deadline, retried after transient
        failures; GatewayError when Triton is down, the model not ready or time is up. Other
        refusals are raised as they are."""
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            try:
                return await method(*args, client_timeout=max(deadline - loop.time(), 0.001), **kwargs)
            except InferenceServerException as error:
                if error.status() == UNAVAILABLE and attempt < self.retries:
                    attempt += 1
                    self.on_retry()
                    await asyncio.sleep(BACKOFF_S * 2 ** (attempt - 1) * random.uniform(0.5, 1))
                    continue
                if error.status() in (UNAVAILABLE, NOT_FOUND, DEADLINE_EXCEEDED):
                    self._max_batch = None  # Triton restarted or the model reloaded: read it again
                    raise self._gateway_error(error, self.timeout) from None
                raise

    def _gateway_error(self, error: InferenceServerException, timeout: float) -> GatewayError:
        message = error.message() or str(error)
        if error.status() == NOT_FOUND:
            return GatewayError(
                503, "model_not_ready", f"model {self.model!r} is not ready on Triton at {self.url}: {message}"
            )
        if error.status() == DEADLINE_EXCEEDED:
            return self._timed_out(timeout)
        if error.status() == UNAVAILABLE:
            return GatewayError(503, "triton_unavailable", f"Triton at {self.url} is unavailable: {message}")
        return GatewayError(502, "triton_error", f"Triton at {self.url} refused the request: {message}")

    def _timed_out(self, timeout: float) -> GatewayError:
        return GatewayError(504, "timeout", f"Triton at {self.url} did not answer within {timeout:g} s")
