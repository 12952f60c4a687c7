"""The users' own options, through Locust's custom arguments: on the command line, in a
locust.conf, or as PERF_* environment variables. Locust hands them to workers in distributed
runs, so every process reads the same values from ``environment.parsed_options``."""

from __future__ import annotations

from typing import Any

from locust import events
from locust.util.timespan import parse_timespan

DEFAULT_MODEL = "ensemble_model"
SHAPES = ("steps", "ramp")


def user_counts(text: str) -> tuple[int, ...]:
    """``2,4,8`` to (2, 4, 8): the user counts of a step or ramp shape."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--steps {text!r}: expected user counts such as 2,4,8") from None
    if not counts or min(counts) < 0:
        raise ValueError(f"--steps {text!r}: expected user counts such as 2,4,8")
    return counts


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("perf: what to send")
    group.add_argument("--model", default=DEFAULT_MODEL, env_var="PERF_MODEL", help="Triton model to call")
    group.add_argument("--images", default="", env_var="PERF_IMAGES",
                       help="folder of JPEG/PNG files (default: generated 640x480 JPEGs)")  # fmt: skip
    group.add_argument("--images-per-request", type=int, default=1, env_var="PERF_IMAGES_PER_REQUEST")
    group.add_argument("--input-data", default="", env_var="PERF_INPUT_DATA",
                       help="the model's inputs instead of images: perf_analyzer's JSON input-data file "
                            "(grpc and http locustfiles)")  # fmt: skip
    group.add_argument("--request-timeout", type=float, default=30.0, env_var="PERF_REQUEST_TIMEOUT",
                       help="seconds before a request counts as failed")  # fmt: skip
    group = parser.add_argument_group("perf: how to load")
    group.add_argument("--shape", choices=SHAPES, default=None, env_var="PERF_SHAPE",
                       help="steps: hold each of --steps users for --hold; ramp: go linearly through them")  # fmt: skip
    group.add_argument("--steps", default="1,2,4,8", env_var="PERF_STEPS", help="user counts of the shape")
    group.add_argument("--hold", default="10s", env_var="PERF_HOLD", help="time per step (e.g. 10s, 1m)")
    group.add_argument("--arrival-rate", type=float, default=0.0, env_var="PERF_ARRIVAL_RATE",
                       help="open loop: requests per second in all, sent on schedule whatever the latency, "
                            "shared by the users (0: closed loop, each user waits for its answer)")  # fmt: skip
    group.add_argument("--max-in-flight", type=int, default=64, env_var="PERF_MAX_IN_FLIGHT",
                       help="open loop: requests a user may have waiting; an arrival beyond it is missed")  # fmt: skip


def hold_seconds(options: Any) -> float:
    return float(parse_timespan(options.hold))
