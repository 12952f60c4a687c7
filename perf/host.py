"""Facts about the machine perf runs on: GPUs and ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess


def gpus() -> list[str]:
    """Names of the NVIDIA GPUs ``nvidia-smi`` sees; empty when there is none or no driver."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.startswith("GPU ")]


def cores() -> int:
    """Cores this process may run on (what a container or taskset allows, not the machine's)."""
    return len(os.sched_getaffinity(0))


def port_free(host: str, port: int) -> bool:
    """Whether a server could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports the kernel reports free now (for tests and side-by-side servers)."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return ports


def die_with_parent(argv: list[str], sig: signal.Signals = signal.SIGKILL) -> list[str]:
    """``argv`` run so that it gets ``sig`` when perf dies, even by SIGKILL: no server or load
    generator outlives the sweep that started it. util-linux's setpriv sets the parent-death
    signal and execs the command. (Not a ``preexec_fn``: Python code between fork and exec can
    deadlock on a lock another thread held, such as a gRPC client's, and it did.)"""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return argv
    return [setpriv, f"--pdeathsig={sig.name.removeprefix('SIG')}", "--", *argv]
