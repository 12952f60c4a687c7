"""``TritonUser``: what every perf user shares. It builds its requests once, off the measured
path; sends them in turn, closed loop (one at a time) or open loop (on a fixed schedule,
whatever the latency); and measures every request at one point, reporting through Locust's
request event. A protocol's user only says how to build a request and how to send it."""

from __future__ import annotations

import functools
import random
import time
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import gevent
import numpy as np
from gevent.pool import Pool
from locust import User, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

# Imported for the listeners they register: the --shape option's, the web UI's perf tab.
import perf.locust.shapes
import perf.locust.webui  # noqa: F401
from perf import tensors
from perf.images import image_files, synthetic_set
from perf.locust.stats import TALLIES
from perf.locust.units import PER_SECOND

# Workers receive the master's own options but not its -u: the open loop's users divide the
# arrival rate by all users, so the master passes their number on under this name.
USERS_IN_ALL = "perf_users_in_all"
IMAGES_ONLY = "{} sends images only: --input-data is for the grpc and http locustfiles, Triton's own protocols"


@events.test_start.add_listener
def _pass_on_the_user_count(environment: Environment, **_: object) -> None:
    if not isinstance(environment.runner, WorkerRunner) and environment.parsed_options is not None:
        setattr(environment.parsed_options, USERS_IN_ALL, environment.parsed_options.num_users or 1)


class RequestFailed(Exception):
    """A request the server answered with an error, or never answered; the message is the
    server's own text."""


@dataclass(frozen=True)
class Prepared:
    """A request ready to send, and its size on the wire."""

    body: Any
    size: int


@functools.cache
def payload_images(folder: str) -> tuple[bytes, ...]:
    """Encoded images, read (or generated) once per process and shared by its users."""
    if folder:
        return tuple(path.read_bytes() for path in image_files(Path(folder)))
    return tuple(synthetic_set(32, seed=0)[0])


class TritonUser(User):
    """Sends the images of ``--images`` in turn, ``--images-per-request`` at a time."""

    abstract = True
    request_type: ClassVar[str]

    @abstractmethod
    def prepare(self, images: list[bytes]) -> Prepared:
        """One request carrying ``images``."""

    def prepare_arrays(self, arrays: dict[str, np.ndarray]) -> Prepared:
        """One request carrying these inputs, by name (``--input-data``)."""
        raise ValueError(IMAGES_ONLY.format(type(self).__name__))

    def model_config(self) -> dict[str, Any]:
        """The model's config as the server reports it, to type ``--input-data`` by."""
        raise ValueError(IMAGES_ONLY.format(type(self).__name__))

    @abstractmethod
    def connect(self, connections: int) -> None:
        """Open the user's client, with room for ``connections`` requests at once."""

    @abstractmethod
    def send(self, request: Prepared) -> int:
        """Send one request and wait for its answer; the answer's size in bytes. Raises
        RequestFailed with the server's error text."""

    @abstractmethod
    def close(self) -> None:
        """Close the client (an open gRPC channel keeps Locust from exiting)."""

    def name(self) -> str:
        """The request's name in Locust's statistics."""
        return self.environment.parsed_options.model

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.timeout = options.request_timeout
        self.request_name = self.name()
        rate = options.arrival_rate / max(1, getattr(options, USERS_IN_ALL, None) or options.num_users or 1)
        self.interval = 1 / rate if rate > 0 else 0.0
        self.in_flight = Pool(options.max_in_flight) if self.interval else None
        self.connect(options.max_in_flight if self.interval else 1)
        if options.input_data:  # the model's own inputs, typed by its config as the server reports it
            typed, batching = tensors.inputs_of(self.model_config())
            steps = tensors.read_steps(Path(options.input_data))
            self.requests = [self.prepare_arrays(tensors.arrays(step, typed, batching)) for step in steps]
        else:
            images = payload_images(options.images)
            per_request = max(1, options.images_per_request)
            self.requests = [
                self.prepare([images[(i + k) % len(images)] for k in range(per_request)])
                for i in range(0, len(images), per_request)
            ]
        self.turn = 0
        # Users start at random points of their first interval, so their arrivals interleave.
        self.next_arrival = time.perf_counter() + random.random() * self.interval

    def on_stop(self) -> None:
        if self.in_flight is not None:
            self.in_flight.join(timeout=self.timeout)
        self.close()

    @task
    def next_request(self) -> None:
        request = self.requests[self.turn % len(self.requests)]
        self.turn += 1
        if self.in_flight is None:
            self.measure(request)
            return
        gevent.sleep(max(0.0, self.next_arrival - time.perf_counter()))
        self.next_arrival += self.interval
        full = self.in_flight.full()
        TALLIES.arrival(self.request_type, self.request_name, missed=full)
        if not full:
            self.in_flight.spawn(self.measure, request)

    def measure(self, request: Prepared) -> None:
        error, length = None, 0
        start = time.perf_counter()
        try:
            length = self.send(request)
        except RequestFailed as failure:
            error = failure
        self.environment.events.request.fire(
            request_type=self.request_type,
            name=self.request_name,
            response_time=(time.perf_counter() - start) * PER_SECOND,
            response_length=length,
            exception=error,
            context={"request_bytes": request.size},
        )
