"""What perf finds on this machine: tools, server, backends, GPUs, ports."""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from perf import host, tools
from perf.repository import reference_repository
from perf.server import EmbeddedServer, Ports, ServerError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def run_checks(tools_dir: Path | None = None, ports: Ports | None = None) -> list[Check]:
    """Each check independent, so one missing part does not hide the others."""
    ports = ports or Ports()
    root = tools_dir or tools.default_tools_dir()
    tool = tools.Tools(root)
    checks = [Check("python", True, f"{sys.version.split()[0]} ({sys.executable})")]
    installed = tool.installed()
    for name, spec in tools.WHEELS.items():
        have = installed.get(name)
        checks.append(Check(f"tools: {name}", have == spec, have or f"missing in {root}: run `perf setup`"))
    missing = tools.missing_system_packages()
    checks.append(Check(
        "system libraries", not missing,
        "libb64, libpython found" if not missing else f"missing; run: {tools.apt_command(missing)}",
    ))  # fmt: skip
    try:
        tool.check()
        usable = True
    except tools.ToolsError as error:
        usable = False
        checks.append(Check("tritonserver", False, str(error)))
    if usable:
        checks.append(_server_check(tool))
        backends = sorted(p.name for p in tool.backends.iterdir() if p.is_dir())
        checks.append(Check("backends", "python" in backends, ", ".join(backends)))
        try:
            checks.append(Check("perf_analyzer", True, f"{tool.perf_analyzer_version()} ({tool.perf_analyzer})"))
        except tools.ToolsError as error:
            checks.append(Check("perf_analyzer", False, str(error)))
    gpus = host.gpus()
    checks.append(Check("GPUs", True, "; ".join(gpus) if gpus else "none: models run as KIND_CPU", required=False))
    for label, port in ports.named().items():
        free = host.port_free("127.0.0.1", port)
        checks.append(Check(f"port {port} ({label})", free, "free" if free else "in use", required=False))
    checks.append(Check("platform", True, f"{platform.platform()}, {host.cores()} cores", required=False))
    return checks


def _server_check(tool: tools.Tools) -> Check:
    """Start the server with no model loaded, on free ports, and ask it its version."""
    http, grpc, metrics = host.free_ports(3)
    server = EmbeddedServer(
        reference_repository(), ports=Ports(http, grpc, metrics), models_to_load=[], tools_dir=tool.root
    )
    start = time.perf_counter()
    try:
        with server, server.client() as client:
            meta = client.get_server_metadata(as_json=True)
            took = time.perf_counter() - start
    except ServerError as error:
        return Check("tritonserver", False, str(error).splitlines()[0])
    return Check("tritonserver", True, f"{meta['version']}, started in {took:.1f} s ({tool.tritonserver})")
