"""A server perf did not start is left as found.

A staging or production Triton must never be left serving a trial config. Before a sweep
changes anything on such a server, the config of every model it will touch is read from the
server and written into the run folder; after the sweep (finished, failed or interrupted) each
is loaded back, the composing models before the ensemble that calls them, and checked. A run
killed outright leaves the file behind: the same command restores on its next start's end
(the file is the first run's, not overwritten), and `perf restore RUN` does only that. The
repository on the server's disk is never written: configs travel over the model-control API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from perf.modelconfig import from_json, to_json
from perf.server import RemoteServer, ServerError, TritonServer

PROBE = "__perf_probe_no_such_model__"  # unloading it is a no-op where loads are allowed


class RestoreError(RuntimeError):
    """Configs that could not be put back; the message says which and what to do."""


def require_explicit(server: TritonServer) -> None:
    """Refuse a server whose models cannot be reloaded over the API, before anything starts:
    Triton answers a load (and an unload of a model it does not have) only in explicit mode."""
    try:
        server.unload_model(PROBE)
    except ServerError as error:
        raise ServerError(
            f"the server at {server.grpc_url} does not take model loads ({error}): perf sweeps a running server by "
            "reloading its models, which Triton allows with --model-control-mode=explicit (add --load-model=* to "
            "load every model at start)"
        ) from None


@dataclass
class Keeper:
    """The configs a sweep found on one server, kept in ``path`` until they are back."""

    path: Path
    server: TritonServer

    def save(self, models: list[str]) -> None:
        """Read ``models``' live configs (in the order they are to be loaded back) and keep
        them, unless a killed run's are kept already: those are what the server had before."""
        if not self.path.is_file():
            configs = {m: json.loads(to_json(self.server.model_config(m))) for m in models}
            self.path.write_text(json.dumps({"url": self.server.grpc_url, "models": configs}, indent=1))

    def restore(self) -> list[str]:
        """Load every kept config back and check it; what was done, a line each. The file
        goes once all are back; RestoreError (the file kept) where some could not be."""
        if not self.path.is_file():
            return []
        kept = json.loads(self.path.read_text())["models"]
        said, failed = [], []
        for model, config in kept.items():
            wanted = from_json(config)
            try:
                if self.server.model_config(model) != wanted:
                    self.server.load_model(model, wanted)
                    said.append(f"{model}: its config before the sweep loaded back on {self.server.grpc_url}")
                if self.server.model_config(model) != wanted:
                    failed.append(f"{model}: loaded back, but the server reports another config")
            except ServerError as error:
                failed.append(f"{model}: {error}")
        if failed:
            raise RestoreError(
                f"could not put back on {self.server.grpc_url}: {'; '.join(failed)}. The configs are kept in "
                f"{self.path}; run `perf restore {self.path.parent}` once the server is back"
            )
        self.path.unlink()
        return said or [f"{', '.join(kept)}: unchanged on {self.server.grpc_url}"]


def kept_files(run: Path) -> list[Path]:
    return sorted(run.glob("server*-before.json"))


def keeper_file(run: Path, index: int) -> Path:
    return run / f"server{index}-before.json"


def restore_run(run: Path) -> list[str]:
    """`perf restore RUN`: every server's kept configs put back, at the address kept with them."""
    files = kept_files(run)
    if not files:
        return [f"{run}: nothing to restore (no sweep of a running server left configs to put back)"]
    said = []
    for path in files:
        server = RemoteServer.from_url(json.loads(path.read_text())["url"])
        server.start()
        said += Keeper(path, server).restore()
    return said
