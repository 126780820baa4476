"""The ``hpclab`` command.

Each subcommand lives in its own module ``hpclab/cli/<name>.py`` that defines
``register(subparsers)``; it adds its parser and sets ``func`` (a callable taking the parsed
arguments and returning an exit code). Bad input raises :class:`hpclab.HpclabError` (or
``KeyError`` for unknown names), which is printed as one line and exits 2, with no traceback.
With ``--json``, standard output carries the JSON only: what compiled code writes to file
descriptor 1 while the command runs (RDKit's C++ log, for one) goes to standard error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
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


def _flush_c_streams() -> None:
    """Flush the C library's stdio buffers (compiled code's printf and std::cout)."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # pragma: no cover - no C library to ask
        pass


@contextlib.contextmanager
def _json_only_on_stdout():
    """While the command runs, file descriptor 1 points at standard error and ``sys.stdout`` at
    the real standard output, so that only what Python prints (the JSON) reaches stdout. A
    ``sys.stdout`` that is not file descriptor 1 (pytest's capture, a notebook's stream) is
    left alone."""
    try:
        fd = sys.stdout.fileno()
        err = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        fd = err = None
    if fd != 1 or err is None:  # captured, or a copy of another descriptor (ipykernel's streams)
        yield
        return
    sys.stdout.flush()
    _flush_c_streams()
    saved = os.dup(fd)
    old = sys.stdout
    os.dup2(err, fd)
    sys.stdout = open(saved, "w", encoding=getattr(old, "encoding", None) or "utf-8", closefd=False)
    try:
        yield
    finally:
        sys.stdout.flush()
        with contextlib.suppress(Exception):
            old.flush()  # what was written to the old object meanwhile (sys.__stdout__) goes to stderr
        _flush_c_streams()  # and so does what compiled code buffered, not after the JSON
        sys.stdout.close()
        sys.stdout = old
        os.dup2(saved, fd)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with _json_only_on_stdout() if getattr(args, "json", False) else contextlib.nullcontext():
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
