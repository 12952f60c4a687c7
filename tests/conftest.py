"""Shared fixtures: a real Triton server on free loopback ports, and process accounting."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from perf import host
from perf.repository import reference_repository
from perf.server import EmbeddedServer, Ports

REPO = reference_repository()


def free_ports() -> Ports:
    return Ports(*host.free_ports(3))


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes whose command line contains ``text`` (a server's private work folder
    appears in the command lines of tritonserver and of every python stub it starts)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def perf_cli(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "perf", *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


# Short windows: sweeps in tests check what is recorded, not precision.
FAST = ["--measurement-interval", "500"]


def sweep(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return perf_cli("sweep", *args, *FAST, timeout=timeout)


def running_triton(
    tmp_path_factory: pytest.TempPathFactory, name: str, profile: str | None = None
) -> Iterator[EmbeddedServer]:
    """The reference ensemble on a real embedded Triton, for a fixture to yield from; checks
    that stopping it left no process."""
    workdir = tmp_path_factory.mktemp(name)
    with EmbeddedServer(REPO, ports=free_ports(), workdir=workdir, profile=profile) as triton:
        yield triton
    assert processes_mentioning(str(workdir)) == []


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """Shared by the tests that only read."""
    yield from running_triton(tmp_path_factory, "triton")


@pytest.fixture(scope="session")
def labels() -> list[str]:
    return (REPO / "classifier" / "labels.txt").read_text().split()


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium, headless, driven by Playwright: pages are checked as they render."""
    from playwright.sync_api import sync_playwright  # only the browser tests need it

    assert Path(CHROMIUM).is_file(), "the browser tests need Debian's chromium: run `make browser`"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


# Every process a test starts inherits this mark, so the session finds its own leftovers and
# never touches another session's servers.
SESSION_MARK = ("PERF_TEST_SESSION", uuid.uuid4().hex)
os.environ[SESSION_MARK[0]] = SESSION_MARK[1]


def _started_by_this_session(proc: psutil.Process) -> bool:
    try:
        return proc.pid != os.getpid() and proc.environ().get(SESSION_MARK[0]) == SESSION_MARK[1]
    except psutil.Error:
        return False


def pytest_sessionfinish(session: pytest.Session) -> None:
    """No test may leave a process behind (Triton, its stubs, perf_analyzer, a perf command)."""
    leftovers = [p for p in psutil.process_iter() if _started_by_this_session(p)]
    if leftovers:
        for proc in leftovers:
            proc.kill()
        session.exitstatus = 1
        print(f"\nleft-over Triton processes: {[p.pid for p in leftovers]}", file=sys.stderr)
