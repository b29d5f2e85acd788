"""Classes and functions named by import path in a config file (``_target_: mypkg.mymodule.Name``).

Each is imported once, or refused in one line naming the config file, the value and what was expected.
"""

from __future__ import annotations

import importlib

from .errors import ConfigError


def import_target(target: object, where: str, expected: str) -> object:
    """The object ``target`` names (``module.path.Name``).  ``where`` names the config value and
    its file for the message, ``expected`` what the object must be."""
    module_name, _, attr = target.rpartition(".") if isinstance(target, str) else ("", "", "")
    if not module_name or not attr:
        raise ConfigError(f"{where} is invalid: expected an import path such as mypkg.mymodule.Name ({expected})")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # (any error in one's own module: say which, on one line)
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise ConfigError(f"{where}: module {module_name!r} cannot be imported ({type(exc).__name__}: {detail}); "
                          f"expected a module on the Python path (an installed package or PYTHONPATH)") from exc
    obj = getattr(module, attr, None)
    if obj is None:
        raise ConfigError(f"{where}: {attr!r} is not found in module {module_name!r}; expected {expected}")
    return obj
