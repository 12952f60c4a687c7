"""Benchmark: what the FastAPI gateway costs on top of Triton.

The same images at the same concurrency (closed loop: each client sends its next request when
the last is answered) go straight to Triton over gRPC and through a `perf gateway` process over
HTTP, side by side in one run, each level repeated with the order of the two alternating. The
direct side uses the gateway's own Triton client (``perf.gateway.triton.Ensemble``), so the
difference is what the gateway adds: HTTP, the multipart upload, checks and the JSON answer.

The gateway is called by two HTTP clients, side by side: httpx encoding each multipart upload
(what the gateway's tests and most Python callers do), and aiohttp sending each image's upload
encoded once beforehand (what a load generator replaying requests does). On two shared cores a
client's own CPU sits on the request's path as much as the gateway's, so the second client is
the closer measure of what the gateway itself adds.

The ceiling of one worker: the gateway serves on one event-loop thread, so the CPU seconds that
thread spends per request bound what one worker can answer per second, whatever Triton does.

    .venv/bin/python bench/gateway.py --concurrency 1 2 4 8 --duration 10 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import orjson
import psutil

from perf import host
from perf.gateway.process import GatewayProcess
from perf.gateway.triton import Ensemble
from perf.images import synthetic_set
from perf.repository import reference_repository
from perf.server import EmbeddedServer, Ports

MODEL = "ensemble_model"
# What the gateway's cost depends on, recorded with each result.
VERSIONS = (
    "uvicorn", "uvloop", "httptools", "fastapi", "starlette", "orjson", "python-multipart", "httpx", "aiohttp",
    "grpcio",
)  # fmt: skip
# The gateway's targets, by the client that calls it.
GATEWAY_TARGETS = ("gateway", "gateway-lean")


@dataclass
class Run:
    """One load level against one target: every latency, and the gateway's CPU if it was the target."""

    target: str
    concurrency: int
    repeat: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    errors: int
    gateway_cpu_s: float | None = None  # the whole process
    loop_cpu_s: float | None = None  # its event-loop thread
    in_gateway_ms: list[float] = field(default_factory=list, repr=False)  # total_ms - triton_ms it reports

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


async def closed_loop(
    send: Callable[[int], Awaitable[None]], payloads: int, concurrency: int, duration: float
) -> tuple[list[float], float, int]:
    """``concurrency`` clients sending back to back for ``duration`` s, cycling through the
    ``payloads`` by index: latencies (ms), elapsed s, errors."""
    loop = asyncio.get_running_loop()
    stop = loop.time() + duration
    latencies: list[float] = []
    errors = 0

    async def client(index: int) -> None:
        nonlocal errors
        while loop.time() < stop:
            started = time.perf_counter()
            try:
                await send(index % payloads)
            except (httpx.HTTPError, aiohttp.ClientError, OSError, RuntimeError):
                errors += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            index += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return latencies, time.perf_counter() - started, errors


def thread_cpu(proc: psutil.Process) -> tuple[float, float]:
    """CPU seconds of the whole process and of its main (event-loop) thread."""
    main = next(t for t in proc.threads() if t.id == proc.pid)
    times = proc.cpu_times()
    return times.user + times.system, main.user_time + main.system_time


async def measure(args: argparse.Namespace, triton: EmbeddedServer, gateway: GatewayProcess) -> list[Run]:
    images, _ = synthetic_set(args.images, seed=args.seed)
    per = args.images_per_request
    payloads = [[images[(i + j) % len(images)] for j in range(per)] for i in range(len(images))]
    ensemble = Ensemble(triton.grpc_url, MODEL, timeout=60, retries=0)
    assert gateway.proc is not None
    proc = psutil.Process(gateway.proc.pid)
    in_gateway: list[float] = []
    limits = httpx.Limits(max_connections=max(args.concurrency), max_keepalive_connections=max(args.concurrency))
    files = [[("files", (f"{i}.jpg", b, "image/jpeg")) for i, b in enumerate(batch)] for batch in payloads]
    # Each payload's upload encoded once, by httpx's own multipart encoder, for the lean client.
    encoded = [httpx.Request("POST", gateway.url, files=f) for f in files]
    bodies = [(request.read(), {"Content-Type": request.headers["Content-Type"]}) for request in encoded]
    connector = aiohttp.TCPConnector(limit=max(args.concurrency))
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=60, limits=limits) as http,
        aiohttp.ClientSession(gateway.url, connector=connector) as lean,
    ):

        def answered(status: int, body: bytes) -> None:
            if status != 200:
                raise RuntimeError(body.decode(errors="replace"))
            timing = orjson.loads(body)["timing"]
            in_gateway.append(timing["total_ms"] - timing["triton_ms"])

        async def direct(index: int) -> None:
            await ensemble.infer([(image,) for image in payloads[index]])

        async def via_gateway(index: int) -> None:
            response = await http.post("/predict", files=files[index])
            answered(response.status_code, response.content)

        async def via_gateway_lean(index: int) -> None:
            body, headers = bodies[index]
            async with lean.post("/predict", data=body, headers=headers) as response:
                answered(response.status, await response.read())

        targets = {"direct": direct, "gateway": via_gateway, "gateway-lean": via_gateway_lean}
        for send in targets.values():  # warm each: connections, the model config, Triton's instances
            await closed_loop(send, len(payloads), max(args.concurrency), args.warmup)
        runs = []
        for repeat in range(args.repeats):
            for concurrency in args.concurrency:
                order = list(targets)[repeat % len(targets) :] + list(targets)[: repeat % len(targets)]
                for name in order:
                    in_gateway.clear()
                    cpu_before = thread_cpu(proc)
                    latencies, seconds, errors = await closed_loop(
                        targets[name], len(payloads), concurrency, args.duration
                    )
                    cpu_after = thread_cpu(proc)
                    run = Run(name, concurrency, repeat, seconds, latencies, errors)
                    if name in GATEWAY_TARGETS:
                        run.gateway_cpu_s = cpu_after[0] - cpu_before[0]
                        run.loop_cpu_s = cpu_after[1] - cpu_before[1]
                        run.in_gateway_ms = list(in_gateway)
                    runs.append(run)
                    print(
                        f"repeat {repeat} c={concurrency} {name:8s} {run.requests / seconds:7.1f} req/s "
                        f"p50 {run.percentile(50):6.2f} ms p90 {run.percentile(90):6.2f} ms errors {errors}",
                        flush=True,
                    )
    await ensemble.close()
    return runs


def report(runs: list[Run], args: argparse.Namespace) -> str:
    """Markdown: per client of the gateway and concurrency, medians over the repeats."""

    def med(values: list[float]) -> float:
        return statistics.median(values)

    lines = [
        f"{args.images_per_request} image(s) per request, 640x480 JPEGs (~100 KB), closed loop, "
        f"{args.duration:g} s per run, median of {args.repeats} repeats. Clients of the gateway: "
        "`gateway`, httpx encoding each upload; `gateway-lean`, aiohttp sending uploads encoded once.",
        "",
        "| client | concurrency | direct p50 ms | gateway p50 ms | overhead p50 ms | direct p90 ms "
        "| gateway p90 ms | overhead p90 ms | direct req/s | gateway req/s | in-gateway ms (p50) "
        "| gateway CPU ms/req | event-loop CPU ms/req | event loop busy | one-worker ceiling req/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for target in GATEWAY_TARGETS:
        for concurrency in args.concurrency:
            pairs = [
                (d, g)
                for d in runs
                for g in runs
                if d.target == "direct" and g.target == target and d.concurrency == g.concurrency == concurrency
                and d.repeat == g.repeat
            ]  # fmt: skip
            loop_ms = med([1000 * (g.loop_cpu_s or 0) / g.requests for _, g in pairs])
            cells = [
                med([d.percentile(50) for d, _ in pairs]), med([g.percentile(50) for _, g in pairs]),
                med([g.percentile(50) - d.percentile(50) for d, g in pairs]),
                med([d.percentile(90) for d, _ in pairs]), med([g.percentile(90) for _, g in pairs]),
                med([g.percentile(90) - d.percentile(90) for d, g in pairs]),
                med([d.requests / d.seconds for d, _ in pairs]), med([g.requests / g.seconds for _, g in pairs]),
                med([float(np.median(g.in_gateway_ms)) for _, g in pairs]),
                med([1000 * (g.gateway_cpu_s or 0) / g.requests for _, g in pairs]), loop_ms,
            ]  # fmt: skip
            busy = med([(g.loop_cpu_s or 0) / g.seconds for _, g in pairs])
            numbers = " | ".join(f"{c:.1f}" if c >= 100 else f"{c:.2f}" for c in cells)
            lines.append(f"| {target} | {concurrency} | {numbers} | {busy:.0%} | {1000 / loop_ms:.0f} |")
    errors = sum(r.errors for r in runs)
    lines += [
        "",
        f"errors: {errors}; machine: {psutil.cpu_count()} cores, shared by Triton, the gateway and the load.",
        f"Python {platform.python_version()}, " + ", ".join(f"{name} {version(name)}" for name in VERSIONS) + ".",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--images-per-request", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds per target before measuring")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=32, help="distinct images, cycled")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--json", type=Path, help="write every run here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="perf-bench-gateway-") as work:
        workdir = Path(work)
        ports = Ports(*host.free_ports(3))
        with (
            EmbeddedServer(reference_repository(), ports=ports, workdir=workdir / "triton") as triton,
            GatewayProcess.perf(triton.grpc_url, workdir / "gateway.log") as gateway,
        ):
            runs = asyncio.run(measure(args, triton, gateway))
    print()
    print(report(runs, args))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs]))


if __name__ == "__main__":
    main()
