"""Facts about the machine perf runs on (GPUs, ports), and how perf's processes end with it."""

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


class Stopped(KeyboardInterrupt):
    """A stop asked by a signal other than Ctrl-C's (SIGTERM from ``kill``, systemd or a job
    scheduler): the same clean stop as Ctrl-C, servers and their stubs stopped and the run
    left to resume, with the exit status a shell gives that signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.code = 128 + signum


def stop_on(*signals: signal.Signals) -> None:
    """Turn ``signals`` into a clean stop: KeyboardInterrupt for SIGINT, ``Stopped`` for the
    others. Explicit, because a process started in a script's background has SIGINT ignored,
    and Python's default for SIGTERM ends it without running a single ``finally``."""
    for sig in signals:
        signal.signal(sig, _raise_stop)


def exit_code(stop: KeyboardInterrupt) -> int:
    """The exit status for a stop: 130 for Ctrl-C, 128 + the signal's number for the others."""
    return stop.code if isinstance(stop, Stopped) else 128 + signal.SIGINT


def _raise_stop(signum: int, _frame: object) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Stopped(signum)
