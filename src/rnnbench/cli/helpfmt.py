"""The ``--help`` of rnnbench's argparse commands: plain text, every default shown."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and epilog's line breaks (examples stay one per line) and appends
    ``(default: X)`` to an option's help, unless the help already says its default or there is
    none to show (``None``, a flag's ``False``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default == []
                or default is argparse.SUPPRESS or action.option_strings == [] and action.nargs in ("*", "?")):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def parser(prog: str, description: str, epilog: str | None = None, **kwargs) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                   formatter_class=HelpFormatter, **kwargs)
