"""The ``hpclab`` command.

Each subcommand lives in its own module ``hpclab/cli/<name>.py`` that defines
``register(subparsers)``; it adds its parser and sets ``func`` (a callable taking the parsed
arguments and returning an exit code). Bad input raises :class:`hpclab.HpclabError` (or
``KeyError`` for unknown names), which is printed as one line and exits 2, with no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from hpclab._validate import HpclabError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's default prints usage too)
        self.exit(2, f"hpclab: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hpclab", description="Cloud HPC workbench: real runs small, models large.")
    from hpclab import __version__

    parser.add_argument("--version", action="version", version=f"hpclab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (HpclabError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"hpclab: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hpclab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
