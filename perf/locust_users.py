"""Locust users that drive Triton. The locustfiles in locustfiles/ are thin: the users live
here, and every request reports through Locust's one request event.

gRPC under gevent: grpcio must be told to cooperate with gevent before any channel exists,
and each user's channel is closed when the user stops, or Locust hangs at exit.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import gevent
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import tritonclient.grpc as grpcclient  # noqa: E402
from locust import User, events, task  # noqa: E402
from locust.stats import CSV_STATS_INTERVAL_SEC  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from perf.images import image_files, read_and_pad_images, synthetic_set  # noqa: E402

DEFAULT_MODEL = "ensemble_model"


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("perf: Triton")
    group.add_argument("--model", default=DEFAULT_MODEL, env_var="PERF_MODEL", help="model to call")
    group.add_argument("--images", default="", env_var="PERF_IMAGES",
                       help="folder of JPEG/PNG files (default: generated 640x480 JPEGs)")  # fmt: skip
    group.add_argument("--images-per-request", type=int, default=1, env_var="PERF_IMAGES_PER_REQUEST")
    group.add_argument("--request-timeout", type=float, default=30.0, env_var="PERF_REQUEST_TIMEOUT",
                       help="seconds before a request counts as failed")  # fmt: skip


@events.init.add_listener
def _finish_requests_in_flight(environment, **_: object) -> None:
    """Without a stop timeout Locust kills users mid-request at the end of a run: the server
    then counts requests Locust never records. Let them finish (bounded by the request
    timeout) unless the user chose a --stop-timeout."""
    if not environment.stop_timeout and environment.parsed_options is not None:
        environment.stop_timeout = environment.parsed_options.request_timeout


@events.test_stop.add_listener
def _let_the_csv_catch_up(environment, **_: object) -> None:
    """Locust rewrites its --csv files once a second and not again at exit, so the last
    second of requests would be missing from them: give its writer one more turn, now that
    the users have stopped."""
    if getattr(environment.parsed_options, "csv_prefix", None):
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.2)


@functools.cache
def _images(folder: str) -> tuple[bytes, ...]:
    """Payloads, made once per process and shared by its users."""
    if folder:
        return tuple(path.read_bytes() for path in image_files(Path(folder)))
    return tuple(synthetic_set(32, seed=0)[0])


class TritonGrpcUser(User):
    """Sends encoded images to a model over gRPC, one request per task, cycling the images."""

    abstract = True

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.model = options.model
        self.timeout = options.request_timeout
        images = _images(options.images)
        per_request = max(1, options.images_per_request)
        # Requests are built once: the task only sends them, so the user's own cost stays off
        # what it measures.
        self.requests = []
        for i in range(0, len(images), per_request):
            batch = read_and_pad_images([images[(i + k) % len(images)] for k in range(per_request)])
            tensor = grpcclient.InferInput("RAW_IMAGE", list(batch.shape), "UINT8")
            tensor.set_data_from_numpy(batch)
            self.requests.append((tensor, batch.nbytes))
        self.turn = 0
        self.client = grpcclient.InferenceServerClient(self.host)

    def on_stop(self) -> None:
        self.client.close()

    @task
    def infer(self) -> None:
        tensor, request_bytes = self.requests[self.turn % len(self.requests)]
        self.turn += 1
        error, length = None, 0
        start = time.perf_counter()
        try:
            result = self.client.infer(self.model, [tensor], client_timeout=self.timeout)
            length = sum(len(raw) for raw in result.get_response().raw_output_contents)
        except InferenceServerException as exc:
            error = exc
        events.request.fire(
            request_type="grpc",
            name=self.model,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=length,
            exception=error,
            context={"request_bytes": request_bytes},
        )
