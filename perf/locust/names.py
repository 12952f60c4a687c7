"""Locust imports a locustfile under its file's name, with the file's folder first on
sys.path: ``locustfiles/grpc.py`` becomes the module ``grpc`` and ``locustfiles/http.py`` the
module ``http``, hiding grpcio and the standard library's http package from every later
``import``. This module imports nothing that needs either, so a locustfile can call it first.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType


def give_name_back(locustfile: str) -> None:
    """Give the module name that Locust took for ``locustfile`` back to the package it hides.

    The package's original module object is kept where one exists (modules that imported it
    hold it in their globals: ``urllib.request`` holds ``http``), so its submodules, already
    imported, stay reachable as attributes; otherwise it is imported now, with the
    locustfile's folder set aside. Locust keeps its own reference to the locustfile's module.
    """
    path = Path(locustfile).resolve()
    name = path.stem
    mine = sys.modules.pop(name, None)
    sys.modules[name] = _original(name, mine) or _import_without(name, path.parent)


def _original(name: str, mine: ModuleType | None) -> ModuleType | None:
    for module in list(sys.modules.values()):
        held = vars(module).get(name) if isinstance(module, ModuleType) else None
        if isinstance(held, ModuleType) and held is not mine and held.__name__ == name:
            return held
    return None


def _import_without(name: str, folder: Path) -> ModuleType:
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != folder]
    try:
        return importlib.import_module(name)
    finally:
        sys.path[:] = saved
