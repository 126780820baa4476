"""Scheduler addresses: parsed, and a TCP connection tried (a few seconds at most), before a
``distributed.Client`` is made, so that a wrong address fails fast in one line instead of after
Dask's 30 s (used by :func:`hpclab.elastic._pool_attach.connect` and the command line)."""

from __future__ import annotations

import socket

from hpclab._validate import HpclabError

__all__ = ["check_scheduler", "CONNECT_TIMEOUT"]

#: seconds a scheduler address is given to accept a TCP connection
CONNECT_TIMEOUT = 3.0


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
