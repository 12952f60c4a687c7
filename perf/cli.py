"""The `perf` command: parse, call, print."""

from __future__ import annotations

import shlex
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from perf import doctor, tools
from perf.drivers.perf_analyzer import PerfAnalyzerError
from perf.host import exit_code, stop_on
from perf.modelconfig import ConfigError
from perf.plan import PlanError
from perf.repository import (
    PIXELS_MODEL_FILE,
    TORCHSCRIPT_FILE,
    RepositoryError,
    emit_libtorch,
    open_repository,
    reference_repository,
)
from perf.results import RunError
from perf.server import DockerServer, EmbeddedServer, Ports, RemoteServer, ServerError, TritonServer
from perf.sweep import SweepError

if TYPE_CHECKING:
    from perf.findings import Findings

app = typer.Typer(
    help="Load testing and performance tuning for NVIDIA Triton Inference Server.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
model_app = typer.Typer(help="Build and export the reference classifier.", no_args_is_help=True)
app.add_typer(model_app, name="model")
console = Console()
EXPECTED = (ServerError, tools.ToolsError, RepositoryError, ConfigError, PerfAnalyzerError, FileNotFoundError)

RepoOption = Annotated[
    Path | None, typer.Option("--repo", help="Model repository (default: the reference model_repo/).")
]
HostOption = Annotated[str, typer.Option(help="Address the server binds; 127.0.0.1 keeps it off the network.")]
HttpPort = Annotated[int, typer.Option("--http-port")]
GrpcPort = Annotated[int, typer.Option("--grpc-port")]
MetricsPort = Annotated[int, typer.Option("--metrics-port")]
UrlOption = Annotated[str, typer.Option("--url", help="Triton's gRPC address, HOST:PORT.")]
ProfileOption = Annotated[
    str | None,
    typer.Option(help="Serve each model's configs/PROFILE.pbtxt (e.g. tuned) instead of its config.pbtxt."),
]


def _fail(error: Exception) -> None:
    console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)  # paths hold [N]: not markup
    raise typer.Exit(1)


def _repo(path: Path | None) -> Path:
    return (path or reference_repository()).expanduser().resolve()


@app.command()
def setup(tools_dir: Annotated[Path | None, typer.Option(help="Where to install the tools.")] = None) -> None:
    """Install tritonserver and perf_analyzer (binary only) and build the classifier if missing."""
    try:
        root = tools_dir or tools.default_tools_dir()
        tools.install(root, log=console.print)
        repo = reference_repository()
        model = repo / "classifier" / "1" / TORCHSCRIPT_FILE
        if tools_dir is None and not model.is_file():
            console.print("classifier: building model.pt (`perf model build`) ...")
            build()
        elif tools_dir is None and not (pixels := model.with_name(PIXELS_MODEL_FILE)).is_file():
            from perf import modelbuild

            modelbuild.write_pixels_model(repo)
            console.print(f"classifier: wrote {pixels} (the tuned profile's, from model.pt)", highlight=False)
        console.print(f"[green]ready[/green]: tools in {root}")
    except EXPECTED as error:
        _fail(error)


@app.command("doctor")
def doctor_command(
    tools_dir: Annotated[Path | None, typer.Option(help="Tools folder to check.")] = None,
) -> None:
    """Report what perf finds: server and its version, perf_analyzer, backends, GPUs, ports."""
    table = Table("check", "", "found")
    checks = doctor.run_checks(tools_dir)
    for check in checks:
        mark = "[green]ok[/green]" if check.ok else ("[red]FAIL[/red]" if check.required else "[yellow]warn[/yellow]")
        table.add_row(check.name, mark, check.detail)
    console.print(table)
    if any(c.required and not c.ok for c in checks):
        raise typer.Exit(1)


def _make_server(
    mode: str, repo: Path | None, host: str, ports: Ports, models: list[str] | None, url: str | None,
    gpus: list[int] | None, image: str | None, profile: str | None = None,
) -> TritonServer:  # fmt: skip
    if mode == "embedded":
        return EmbeddedServer(_repo(repo), host=host, ports=ports, models_to_load=models or None, profile=profile)
    if mode == "docker":
        extra = {"image": image} if image else {}
        return DockerServer(_repo(repo), host=host, ports=ports, gpus=gpus, profile=profile, **extra)
    if mode == "remote":
        return RemoteServer.from_url(url or f"{host}:{ports.grpc}", ports.http, ports.metrics)
    raise ServerError(f"unknown mode {mode!r}: choose embedded, docker or remote")


@app.command()
def serve(
    mode: Annotated[
        str, typer.Option(help="embedded (installed binary), docker (NVIDIA's container) or remote.")
    ] = "embedded",
    repo: RepoOption = None,
    host: HostOption = "127.0.0.1",
    http_port: HttpPort = 8000,
    grpc_port: GrpcPort = 8001,
    metrics_port: MetricsPort = 8002,
    model: Annotated[list[str] | None, typer.Option("--model", help="Load only these models (repeatable).")] = None,
    url: Annotated[str | None, typer.Option(help="remote: the server's gRPC HOST:PORT.")] = None,
    gpus: Annotated[
        list[int] | None, typer.Option("--gpu", help="docker: GPU index to use (repeatable; default all).")
    ] = None,
    image: Annotated[str | None, typer.Option(help="docker: Triton image.")] = None,
    print_command: Annotated[bool, typer.Option(help="docker: print the docker command and exit.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server to be ready.")] = 180,
    profile: ProfileOption = None,
) -> None:
    """Start Triton, wait until it is ready, and stay in the foreground until Ctrl-C or SIGTERM."""
    try:
        ports = Ports(http_port, grpc_port, metrics_port)
        server = _make_server(mode, repo, host, ports, model, url, gpus, image, profile)
        if print_command:
            if not isinstance(server, DockerServer):
                raise ServerError("--print-command is for --mode docker")
            console.print(" ".join(shlex.quote(a) for a in server.prepare()), highlight=False, soft_wrap=True)
            return
        stop_on(signal.SIGINT, signal.SIGTERM)
        started = time.perf_counter()
        server.start(timeout)
        try:
            console.print(
                f"[green]Triton ready[/green] in {time.perf_counter() - started:.1f} s: gRPC {server.grpc_url}, "
                f"HTTP {server.http_url}, metrics {server.metrics_url}",
                highlight=False,
            )
            if log := getattr(server, "log_path", None):
                console.print(f"log: {log}", highlight=False)
            _print_models(server)
            console.print("Ctrl-C to stop")
            while server.is_ready() or isinstance(server, RemoteServer):
                time.sleep(1)
            console.print("[red]Triton stopped on its own[/red]")
            raise typer.Exit(1)
        except KeyboardInterrupt:
            console.print("stopping ...")
        finally:
            server.stop()
    except EXPECTED as error:
        _fail(error)


def _print_models(server: TritonServer) -> None:
    table = Table("model", "version", "state", "reason")
    for m in server.models():
        style = "green" if m.state == "READY" else "yellow"
        table.add_row(m.name, m.version, f"[{style}]{m.state}[/{style}]", m.reason)
    console.print(table)


@app.command()
def status(url: UrlOption = "127.0.0.1:8001") -> None:
    """List the models of a running server and their states."""
    try:
        server = RemoteServer.from_url(url)
        server.start()
        _print_models(server)
    except EXPECTED as error:
        _fail(error)


@model_app.command("build")
def build(
    repo: RepoOption = None,
    arch: Annotated[
        str, typer.Option(help="small (trained, accurate) or resnet18 (random weights, realistic compute).")
    ] = "small",
    images: Annotated[int, typer.Option(help="Training images.")] = 1500,
    epochs: Annotated[int, typer.Option()] = 8,
) -> None:
    """Train the classifier on synthetic images and export TorchScript into the repository."""
    from perf import modelbuild

    try:
        result = modelbuild.build(_repo(repo), arch=arch, images=images, epochs=epochs, log=console.print)
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    accuracy = "" if result.train_accuracy is None else f", train accuracy {result.train_accuracy:.1%}"
    console.print(f"wrote {result.path} ({result.arch}) in {result.seconds:.1f} s{accuracy}", highlight=False)


@model_app.command("emit")
def emit(
    out: Annotated[Path, typer.Argument(help="New folder for the libtorch repository.")],
    repo: RepoOption = None,
) -> None:
    """Write a copy of the repository for NVIDIA's container (TorchScript on pytorch_libtorch)."""
    try:
        if out.exists() and any(out.iterdir()):
            raise RepositoryError(f"{out} exists and is not empty: choose a new folder")
        emitted = emit_libtorch(open_repository(_repo(repo)), out.resolve())
    except EXPECTED as error:
        _fail(error)
    for name in emitted.names:
        config = emitted.configs[name]
        profiles = sorted(p.stem for p in (emitted.path / name / "configs").glob("*.pbtxt"))
        also = f" (profiles: {', '.join(profiles)})" if profiles else ""
        console.print(f"{name}: {config.platform or config.backend}{also}")
    console.print(f"wrote {emitted.path}; serve a profile with `tritonserver --model-config-name=PROFILE`")


@app.command("classify")
def classify_command(
    files: Annotated[list[Path], typer.Argument(help="JPEG or PNG files.")],
    url: UrlOption = "127.0.0.1:8001",
    model: Annotated[str, typer.Option()] = "ensemble_model",
    repo: RepoOption = None,
) -> None:
    """Classify image files through the ensemble."""
    from perf.client import classify, read_labels

    try:
        labels = read_labels(_repo(repo) / "classifier" / "labels.txt")
        predictions = classify(url, model, [f.read_bytes() for f in files], labels)
    except (*EXPECTED, RuntimeError) as error:
        _fail(error)
    table = Table("file", "label", "probability")
    for path, p in zip(files, predictions, strict=True):
        table.add_row(str(path), p.label, f"{p.probability:.3f}")
    console.print(table)


@app.command()
def demo(
    repo: RepoOption = None,
    http_port: HttpPort = 8000,
    grpc_port: GrpcPort = 8001,
    metrics_port: MetricsPort = 8002,
    concurrency: Annotated[list[int] | None, typer.Option(help="Concurrency levels (repeatable).")] = None,
    measurement_interval: Annotated[int, typer.Option(help="perf_analyzer window, ms.")] = 2000,
) -> None:
    """Serve the ensemble, classify a few fresh images, and measure it with perf_analyzer."""
    from perf import demo as demo_job

    stop_on(signal.SIGINT, signal.SIGTERM)  # Triton and the demo's temporary folder go with it
    try:
        result = demo_job.run(
            _repo(repo), Ports(http_port, grpc_port, metrics_port), concurrency or [1, 2, 3, 4],
            measurement_interval_ms=measurement_interval, log=console.print,
        )  # fmt: skip
    except EXPECTED as error:
        _fail(error)
    except KeyboardInterrupt as stop:
        console.print("stopped: Triton is stopped and the demo's files removed")
        raise typer.Exit(exit_code(stop)) from None
    table = Table("image", "truth", "predicted", "probability", title="Fresh images through ensemble_model")
    for i, (truth, p) in enumerate(result.predictions):
        mark = "" if truth == p.label else " [red]x[/red]"
        table.add_row(str(i), truth, p.label + mark, f"{p.probability:.3f}")
    console.print(table)
    table = Table(
        "concurrency", "infer/s", "p50 ms", "p90 ms", "p95 ms", "p99 ms",
        title="perf_analyzer on ensemble_model (640x480 JPEGs, gRPC)",
    )  # fmt: skip
    for row in result.load:
        cells = [f"{row[k]:.1f}" for k in ("throughput", "p50_ms", "p90_ms", "p95_ms", "p99_ms")]
        table.add_row(str(row["concurrency"]), *cells)
    console.print(table)


@app.command()
def gateway(
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port of the gateway.")] = 8080,
    triton_url: Annotated[
        str | None,
        typer.Option("--triton-url", help="Triton's gRPC HOST:PORT [PERF_GATEWAY_TRITON_URL; 127.0.0.1:8001]."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model to call [PERF_GATEWAY_MODEL; ensemble_model].")] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Class names, one a line [PERF_GATEWAY_LABELS; the reference labels.txt].")
    ] = None,
    max_files: Annotated[int | None, typer.Option(help="Files per request [PERF_GATEWAY_MAX_FILES; 1000].")] = None,
    max_file_mb: Annotated[float | None, typer.Option(help="MiB per file [PERF_GATEWAY_MAX_FILE_MB; 20].")] = None,
    max_request_mb: Annotated[
        float | None, typer.Option(help="MiB per request body [PERF_GATEWAY_MAX_REQUEST_MB; 200].")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds a request may wait on Triton [PERF_GATEWAY_TIMEOUT; 30].")
    ] = None,
    retries: Annotated[
        int | None, typer.Option(help="Retries of a transient gRPC failure [PERF_GATEWAY_RETRIES; 2].")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
    access_log: Annotated[
        bool,
        typer.Option(
            help="A log line per request from uvicorn. Off by default: it costs about a tenth of the "
            "event loop's CPU per request, and /metrics counts every request by path and status."
        ),
    ] = False,
) -> None:
    """Serve the FastAPI gateway: POST /predict (image uploads), GET /health, GET /metrics."""
    import uvicorn

    from perf.gateway.app import create_app
    from perf.gateway.settings import Settings

    try:
        settings = Settings.load(
            triton_url=triton_url, model=model, labels=labels, max_files=max_files, max_file_mb=max_file_mb,
            max_request_mb=max_request_mb, timeout=timeout, retries=retries,
        )  # fmt: skip
        gateway_app = create_app(settings)
    except (ValueError, FileNotFoundError) as error:
        _fail(error)
    console.print(
        f"gateway on http://{host}:{port} -> Triton {settings.triton_url} ({settings.model}); "
        "uvicorn with uvloop and httptools",
        highlight=False,
    )
    # Named, not uvicorn's "auto": the stack users deploy, and an error at start if it is missing.
    uvicorn.run(
        gateway_app, host=host, port=port, log_level=log_level, access_log=access_log, loop="uvloop", http="httptools"
    )


RunArgument = Annotated[Path, typer.Argument(help="A sweep's run folder (its --out).", show_default=False)]
SloOption = Annotated[
    float | None,
    typer.Option("--slo-p99-ms", help="p99 latency bound for the recommendation (default: the sweep's own)."),
]


def _findings(run: Path, slo: float | None) -> Findings:
    # Imported here: reports load pandas and matplotlib, which other commands do without.
    from perf import findings, results

    return findings.find(results.read_run(run), slo)


def _print_verdict(found: Findings) -> None:
    from perf import report

    verdict = report.verdict(found)
    console.print(f"[bold]{verdict['headline']}[/bold]", highlight=False, soft_wrap=True)
    for line in verdict["lines"]:
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    for warning in verdict["warnings"]:
        console.print(f"  [yellow]{warning}[/yellow]", highlight=False, soft_wrap=True)


@app.command("report")
def report_command(run: RunArgument, slo: SloOption = None) -> None:
    """Write RUN/report.html and RUN/plots/*.png: the recommendation, then the plots."""
    from perf import report

    try:
        found = _findings(run, slo)
        page = report.write_report(found)
    except (RunError, ConfigError) as error:
        _fail(error)
    _print_verdict(found)
    console.print(f"report: {page}", highlight=False)


@app.command("compare")
def compare_command(
    run_a: RunArgument,
    run_b: RunArgument,
    out: Annotated[Path | None, typer.Option(help="Folder for compare.html and the PNGs (default: beside B).")] = None,
    slo: SloOption = None,
) -> None:
    """Two sweeps overlaid (perf_analyzer against Locust, before and after a change)."""
    from perf import report

    try:
        a, b = _findings(run_a, slo), _findings(run_b, slo)
        folder = (out or b.run.path.parent / f"compare-{a.run.name}-vs-{b.run.name}").expanduser().resolve()
        page = report.write_comparison(a, b, folder, slo if slo is not None else b.slo_p99_ms)
    except (RunError, ConfigError) as error:
        _fail(error)
    for row in report.side_by_side(a, b):
        line = f"{row['label']}: {row['a'] or '-'} -> {row['b'] or '-'} infer/s {row['change']}"
        console.print(line, highlight=False)
    console.print(f"comparison: {page}", highlight=False)


@app.command("apply")
def apply_command(
    run: RunArgument,
    repo: Annotated[
        Path | None, typer.Option("--repo", help="Model repository to change (default: the one the sweep measured).")
    ] = None,
    slo: SloOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Write without asking.")] = False,
    profile: Annotated[
        str | None, typer.Option(help="Write MODEL/configs/PROFILE.pbtxt (a named profile) instead of config.pbtxt.")
    ] = None,
) -> None:
    """Write the recommended config into the model repository, after showing the diff; the
    original stays beside it as config.pbtxt.TIMESTAMP.bak."""
    from perf import apply

    try:
        found = _findings(run, slo)
        target = (repo or Path(found.run.metadata.get("repository") or reference_repository())).expanduser().resolve()
        changes = apply.changes(found, target, profile)
    except (RunError, ConfigError, RepositoryError, apply.ApplyError) as error:
        _fail(error)
    _print_verdict(found)
    if not changes:
        console.print(f"{target} already has the recommended config: nothing to write", highlight=False)
        return
    for change in changes:
        console.print(change.diff(), highlight=False, markup=False, soft_wrap=True)
    if not yes:
        if not sys.stdin.isatty():
            _fail(ValueError("nothing written: no terminal to confirm on; run again with --yes to write"))
        if not typer.confirm(f"Write {len(changes)} config file(s) in {target}?"):
            console.print("nothing written")
            raise typer.Exit(1)
    for change, backup in zip(changes, apply.write(changes), strict=True):
        kept = f" (the original is in {backup.name})" if backup else ""
        console.print(f"wrote {change.path}{kept}", highlight=False)


@app.command("restore")
def restore_command(run: RunArgument) -> None:
    """Put back the configs a sweep of a running server (--url) found there, where the sweep
    could not (it was killed outright, or the server went away): what `perf sweep` does itself
    at its end."""
    from perf import restore

    try:
        said = restore.restore_run(run.expanduser().resolve())
    except (ServerError, restore.RestoreError) as error:
        _fail(error)
    for line in said:
        console.print(f"restored: {escape(line)}", highlight=False)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def sweep(ctx: typer.Context) -> None:
    """Measure every combination of model settings at every load level (perf sweep --help)."""
    from perf import sweep_command

    stop_on(signal.SIGINT, signal.SIGTERM)  # a clean stop, resumable, whichever asks it
    try:
        code = sweep_command.main(ctx.args, console)
    except (*EXPECTED, PlanError, RunError, SweepError) as error:
        _fail(error)
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
