"""Plug-ins: your own backbones, methods and noise kinds, by name, without editing the package.

A plug-in is a Python module that registers what it defines when it is imported
(`@guider.models.register("mine")`, `@guider.methods.base.register_method("mine")`,
`@guider.data.noise.register_noise_kind`). It is loaded, before anything looks a name up, from:

- `guider --plugin MODULE ...` (any command; repeatable), e.g.
  `PYTHONPATH=plug guider train --plugin mine --backbone mine ...`;
- the workflow config's `plugins: [MODULE, ...]`: the workflow imports them when it loads
  and passes `--plugin` to every `guider` command it runs;
- `$GUIDER_PLUGINS` (comma-separated module names);
- the Python entry-point group `guider.runs.plugins` of installed packages (what a package of
  plug-ins declares in its pyproject.toml: `[project.entry-points."guider.runs.plugins"]
  mine = "mypackage.mine"`), loaded for every command.

A module that cannot be imported is an error naming it (never skipped silently).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterable
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "guider.runs.plugins"
PLUGINS_ENV = "GUIDER_PLUGINS"
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_loaded: set[str] = set()


class PluginError(ValueError):
    """A plug-in module cannot be loaded; the message names it."""


def load_plugins(modules: Iterable[str] = ()) -> list[str]:
    """Import `modules`, those of $GUIDER_PLUGINS and the `guider.runs.plugins` entry points
    (each once); return the module names now loaded."""
    names = [*modules, *(m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip())]
    for name in names:
        _import(name, f"plug-in {name!r}")
    for point in entry_points(group=ENTRY_POINT_GROUP):
        _import(point.value.split(":")[0], f"entry point {point.name!r} ({point.value}) of group {ENTRY_POINT_GROUP}")
    return sorted(_loaded)


def _import(module: str, what: str) -> None:
    if module in _loaded:
        return
    if not _MODULE.match(module):
        raise PluginError(f"{what}: not a Python module name (e.g. mypackage.models)")
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise PluginError(f"{what} cannot be imported ({err}); is its folder on PYTHONPATH?") from None
    _loaded.add(module)


def split_plugin_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the --plugin MODULE values of a command line, the command line without them)."""
    modules, rest, args = [], [], iter(argv)
    for arg in args:
        if arg == "--plugin":
            value = next(args, None)
            if value is None:
                raise PluginError("--plugin needs a module name")
            modules.append(value)
        elif arg.startswith("--plugin="):
            modules.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return modules, rest
