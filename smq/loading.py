"""Import handler modules named on the command line or in SMQ_HANDLERS (dotted names or .py files)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from smq.engine.errors import SmqError


class HandlerImportError(SmqError):
    """A handler module could not be imported; the message names it and why."""


def import_handlers(specs: list[str]) -> list[ModuleType]:
    """Import each module (which registers its handlers on import). Fails on the first bad one."""
    return [_import_one(spec) for spec in specs]


def _import_one(spec: str) -> ModuleType:
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec).resolve()
        if not path.is_file():
            raise HandlerImportError(f"handler file {spec!r} does not exist")
        module_name = f"smq_handlers_{path.stem}_{abs(hash(str(path))) % 10**8}"
        if module_name in sys.modules:
            return sys.modules[module_name]
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise HandlerImportError(f"cannot load handler file {spec!r}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise HandlerImportError(
                f"importing handler file {spec!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        return module
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(spec)
    except Exception as exc:
        raise HandlerImportError(
            f"importing handler module {spec!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
