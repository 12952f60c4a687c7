"""The gateway as a child process on a loopback port, for tests and benchmarks that must
measure it as users run it: its own interpreter, its own event loop, real sockets."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from perf import host

LOCALHOST = "127.0.0.1"


@dataclass
class GatewayProcess:
    """``argv`` serving the gateway on ``port``; ``with`` starts it, waits until it listens,
    and stops it (SIGTERM, then SIGKILL) however the block ends."""

    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = field(default=None, init=False)

    @classmethod
    def perf(cls, triton_url: str, log_path: Path, *flags: str) -> GatewayProcess:
        """``perf gateway`` on a free port in front of ``triton_url``, with extra ``flags``."""
        port = host.free_ports(1)[0]
        argv = [sys.executable, "-m", "perf", "gateway", "--port", str(port), "--triton-url", triton_url, *flags]
        return cls(argv, port, log_path)

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def __enter__(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        try:
            self._wait_listening(timeout=120)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not host.port_open(LOCALHOST, self.port, timeout=0.5):
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited ({self.proc.returncode}): {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not listen within {timeout:.0f} s: {self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
