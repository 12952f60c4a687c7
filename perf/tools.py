"""Find or install the two native tools perf drives: tritonserver and perf_analyzer.

Both come from registry wheels used only for their binaries, installed with ``--no-deps`` into
a tools folder of their own: their Python pins (numpy<2, an old geventhttpclient) must never
reach the project's environment.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Triton 2.51.0 is the newest server and perf_analyzer whose binaries run on glibc 2.36.
WHEELS: dict[str, str] = {
    "pytriton": "nvidia-pytriton==0.7.0",
    "tritonclient": "tritonclient==2.51.0",
    "cudart": "nvidia-cuda-runtime-cu12==12.9.79",
    # The 2.51 python-backend stub hands tensors to numpy 2 with the wrong item size (every
    # byte of a UINT8 row reads as its first byte): the stubs run in an environment of their
    # own that has numpy 1 and sees the project's packages for the rest.
    "stub-env": "numpy==1.26.4",
}
MARKER = ".perf-installed.json"


class ToolsError(RuntimeError):
    """A tool is missing or cannot run; the message says what to do."""


def project_root() -> Path | None:
    """The source checkout perf runs from, if any (editable installs and the test suite)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def default_tools_dir() -> Path:
    """$PERF_TOOLS_DIR, else the checkout's git-ignored tools/, else a per-user cache."""
    if env := os.environ.get("PERF_TOOLS_DIR"):
        return Path(env).expanduser().resolve()
    root = project_root()
    if root is not None:
        return root / "tools"
    return Path.home() / ".cache" / "perf" / "tools"


def _python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class Tools:
    """Paths and environments of an installed tools folder."""

    root: Path

    @property
    def server_dir(self) -> Path:
        return self.root / "pytriton" / "pytriton" / "tritonserver"

    @property
    def tritonserver(self) -> Path:
        return self.server_dir / "bin" / "tritonserver"

    @property
    def backends(self) -> Path:
        return self.server_dir / "backends"

    @property
    def caches(self) -> Path:
        return self.server_dir / "caches"

    @property
    def perf_analyzer(self) -> Path:
        return self.root / "tritonclient" / "bin" / "perf_analyzer"

    def server_env(self) -> dict[str, str]:
        """Environment for tritonserver: its bundled libraries, this interpreter's libpython,
        and the stub environment's bin/ first on PATH: the python stubs take their packages
        from the first python3 there."""
        env = dict(os.environ)
        libdirs = [sysconfig.get_config_var("LIBDIR") or "", str(self.root / "pytriton" / "nvidia_pytriton.libs")]
        env["LD_LIBRARY_PATH"] = _join_paths(libdirs, env.get("LD_LIBRARY_PATH"))
        env["PATH"] = _join_paths([str(self.root / "stub-env" / "bin")], env.get("PATH"))
        return env

    def perf_analyzer_env(self) -> dict[str, str]:
        env = dict(os.environ)
        cudart = self.root / "cudart" / "nvidia" / "cuda_runtime" / "lib"
        env["LD_LIBRARY_PATH"] = _join_paths([str(cudart)], env.get("LD_LIBRARY_PATH"))
        return env

    def installed(self) -> dict[str, str]:
        """Component name -> wheel spec installed for this Python (stubs and numpy are
        per Python version), read from the install markers."""
        found = {}
        for name in WHEELS:
            marker = self.root / name / MARKER
            if marker.is_file() and (record := json.loads(marker.read_text())).get("python") == _python_tag():
                found[name] = record["spec"]
        return found

    def check(self) -> None:
        """Raise ToolsError naming the exact fix if anything needed to run is missing."""
        missing = [name for name, spec in WHEELS.items() if self.installed().get(name) != spec]
        if missing:
            raise ToolsError(
                f"Triton tools for Python {_python_tag()} are not installed in {self.root} "
                f"(missing: {', '.join(missing)}). Run `perf setup` (or `make setup` in the checkout)."
            )
        check_system_libraries()

    def perf_analyzer_version(self) -> str:
        out = subprocess.run(
            [str(self.perf_analyzer), "--version"],
            env=self.perf_analyzer_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        found = re.search(r"Perf Analyzer Version (\S+)", out.stdout + out.stderr)
        if not found:
            raise ToolsError(f"perf_analyzer does not run: {(out.stderr or out.stdout).strip()[-500:]}")
        return found.group(1)


def _join_paths(first: list[str], rest: str | None) -> str:
    return os.pathsep.join([p for p in first if p] + ([rest] if rest else []))


# System libraries the binaries link that no wheel provides: (soname, Debian package).
SYSTEM_LIBRARIES = [("libb64.so.0d", "libb64-0d")]


def missing_system_packages() -> list[str]:
    """Debian packages whose libraries cannot be loaded here."""
    missing = []
    for soname, package in SYSTEM_LIBRARIES:
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing.append(package)
    libdir = Path(sysconfig.get_config_var("LIBDIR") or "/nonexistent")
    libpython = f"libpython{_python_tag()}.so.1.0"
    if not (libdir / libpython).exists():
        try:
            ctypes.CDLL(libpython)
        except OSError:
            missing.append(f"libpython{_python_tag()}")
    return missing


def apt_command(packages: list[str]) -> str:
    sudo = "" if os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get update && {sudo}apt-get install -y {' '.join(packages)}"


def check_system_libraries() -> None:
    if missing := missing_system_packages():
        raise ToolsError(
            f"Missing system libraries for tritonserver/perf_analyzer: {', '.join(missing)}. "
            f"Run: {apt_command(missing)}"
        )


def install(root: Path, log: Callable[[str], None] = print) -> Tools:
    """Install every component not already installed at its pinned version. Idempotent."""
    tools = Tools(root)
    root.mkdir(parents=True, exist_ok=True)
    have = tools.installed()
    for name, spec in WHEELS.items():
        if have.get(name) == spec:
            log(f"{name}: {spec} already installed")
            continue
        log(f"{name}: installing {spec} (binary only) ...")
        _install_component(name, spec, root / name)
    check_system_libraries()
    return tools


def _install_component(name: str, spec: str, target: Path) -> None:
    """Fill a fresh folder beside the target, then swap it in: an interrupted install never
    leaves a half-filled folder that looks installed."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        if name == "stub-env":
            _make_stub_env(spec, staging)
        else:
            _pip_target(spec, staging)
        if name == "pytriton":
            _place_python_stub(staging / "pytriton" / "tritonserver")
        (staging / MARKER).write_text(json.dumps({"spec": spec, "python": _python_tag()}))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _pip_target(spec: str, target: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
         "--target", str(target), spec],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise ToolsError(f"pip could not install {spec}:\n{proc.stderr.strip()[-2000:]}")


def _make_stub_env(spec: str, target: Path) -> None:
    """A virtual environment holding only ``spec`` that sees everything else of this one:
    the stub takes its prefix from the first python3 on PATH and ignores PYTHONPATH."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(target)], check=True)
    site = target / "lib" / f"python{_python_tag()}" / "site-packages"
    _pip_target(spec, site)
    project_site = sysconfig.get_paths()["purelib"]
    (site / "zz-perf-project.pth").write_text(f"import site; site.addsitedir({project_site!r})\n")


def _place_python_stub(server_dir: Path) -> None:
    stub = server_dir / "python_backend_stubs" / _python_tag() / "triton_python_backend_stub"
    if not stub.is_file():
        have = sorted(p.name for p in (server_dir / "python_backend_stubs").iterdir())
        raise ToolsError(f"The Triton wheel has no python-backend stub for Python {_python_tag()} (it has {have}).")
    dest = server_dir / "backends" / "python" / "triton_python_backend_stub"
    shutil.copy2(stub, dest)
    for binary in (server_dir / "bin" / "tritonserver", dest):
        binary.chmod(0o755)


def find(root: Path | None = None) -> Tools:
    """The installed tools, checked; ToolsError with the fix if not usable."""
    tools = Tools(root or default_tools_dir())
    tools.check()
    return tools
