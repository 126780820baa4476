"""Cheap checks of the command line, done before anything heavy starts.

Each numeric option has a domain stated next to it (``BOUNDS`` in each subcommand module); a
value outside gets one line naming the option, the value and the range. Addresses of Dask
schedulers are parsed and a TCP connection is tried (a few seconds at most) before a
``distributed.Client`` is made, so a wrong address fails fast instead of after Dask's 30 s.
"""

from __future__ import annotations

import socket
from pathlib import Path

from hpclab._validate import HpclabError, check_range

__all__ = ["check_bounds", "check_scheduler", "connect", "check_writable_file", "SEED_MAX", "CONNECT_TIMEOUT"]

#: seeds: any whole number numpy's generators take
SEED_MAX = 2**63 - 1
#: seconds a scheduler address is given to accept a TCP connection
CONNECT_TIMEOUT = 3.0


def check_bounds(args, bounds: dict) -> None:
    """``bounds``: option dest -> ``(low, high, integer)`` or ``(low, high, integer, low_open)``;
    options left at None are skipped."""
    for dest, spec in bounds.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        low, high, integer, *rest = spec
        setattr(args, dest, check_range(f"--{dest.replace('_', '-')}", value, low, high,
                                        integer=integer, low_open=bool(rest and rest[0])))


def _parse(address: str) -> tuple[str, str, int]:
    from distributed.comm.addressing import parse_address, parse_host_port

    text = str(address).strip()
    if not text:
        raise HpclabError("--scheduler must be an address such as tcp://127.0.0.1:8786, got ''")
    try:
        scheme, loc = parse_address(text if "://" in text else f"tcp://{text}", strict=True)
    except ValueError:
        raise HpclabError(f"--scheduler must be an address such as tcp://127.0.0.1:8786, got {text!r}") from None
    if scheme not in ("tcp", "tls"):
        raise HpclabError(f"--scheduler must be a tcp:// or tls:// address, got {text!r}")
    try:
        host, port = parse_host_port(loc)
    except (ValueError, TypeError):
        raise HpclabError(f"--scheduler must be host:port, got {text!r}") from None
    if not host or port is None or not 1 <= int(port) <= 65535:
        raise HpclabError(f"--scheduler needs a host and a port in [1, 65535], got {text!r}")
    return scheme, host, int(port)


def check_scheduler(address: str, *, timeout: float = CONNECT_TIMEOUT) -> str:
    """``address`` as ``scheme://host:port`` if it parses and accepts a TCP connection within
    ``timeout`` s; else one line (bad address, unknown host, nothing listening)."""
    from distributed.comm.addressing import unparse_host_port

    scheme, host, port = _parse(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror:
        raise HpclabError(f"--scheduler {address}: unknown host {host!r}") from None
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise HpclabError(f"--scheduler {address}: cannot connect ({reason}); is a Dask scheduler "
                          "running there?") from None
    return f"{scheme}://{unparse_host_port(host, port)}"


def connect(address: str, *, timeout: float = CONNECT_TIMEOUT):
    """A ``distributed.Client`` on ``address``, or one line saying why not within ``timeout`` s
    (bad address, unknown host, nothing listening, not a Dask scheduler)."""
    from distributed import Client

    checked = check_scheduler(address, timeout=timeout)
    try:
        return Client(checked, timeout=max(timeout, 5.0))
    except Exception as exc:  # noqa: BLE001 - whatever answered there, it is not a scheduler
        raise HpclabError(f"--scheduler {address}: not a Dask scheduler or not answering "
                          f"({type(exc).__name__})") from None


def check_writable_file(field: str, path) -> Path:
    """Refuse an output file path that cannot be written, before any work: an empty name, a
    folder, a missing or read-only parent folder, a device that is full (``/dev/full``)."""
    text = str(path)
    if not text.strip():
        raise HpclabError(f"{field} must be a file name, got {text!r}")
    p = Path(text)
    if p.is_dir():
        raise HpclabError(f"{field} {text!r} is a folder; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise HpclabError(f"{field} {text!r}: folder {str(parent)!r} does not exist")
    existed = p.exists()
    try:
        if existed and p.is_char_device():  # /dev/full takes an open but not a byte
            with open(p, "wb", buffering=0) as fh:
                fh.write(b"\n")
        else:
            with open(p, "ab"):  # append: an existing file is not truncated by the check
                pass
    except OSError as exc:
        raise HpclabError(f"{field} {text!r} is not writable ({exc.strerror or type(exc).__name__})") from None
    finally:
        if not existed and p.is_file() and p.stat().st_size == 0:
            p.unlink(missing_ok=True)
    return p
