"""Reaching a Dask scheduler for ``decodex sweep --scheduler`` (one line when it cannot be reached)."""

from __future__ import annotations

import socket
from typing import Any

from decodex.core.errors import ArgumentError
from decodex.explore.sweep_store import os_reason

SCHEDULER_TIMEOUT_S = 5.0  # how long to try to reach a Dask scheduler before refusing --scheduler
DASK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")


def _scheduler_error(flag: str, address: str, problem: str) -> ArgumentError:
    return ArgumentError(f"{flag} {address!r}: {problem}")


def connect_scheduler(address: str, flag: str = "--scheduler") -> Any:
    """A ``distributed.Client`` of the Dask scheduler at ``address``. ArgumentError naming ``flag``
    (one line) when Dask is not installed, the address is not one Dask accepts
    (``tcp://HOST:PORT``; also tls, ws, wss, ucx, inproc) or no scheduler answers within
    SCHEDULER_TIMEOUT_S seconds."""
    try:
        from distributed import Client
        from distributed.comm.addressing import parse_address, parse_host_port
    except ImportError:
        raise ArgumentError(f"{flag}: Dask is not installed (pip install 'decodex[cluster]')") from None
    form = f"not a Dask scheduler address; give tcp://HOST:PORT (or {', '.join(s + '://' for s in DASK_SCHEMES[1:])})"
    try:
        scheme, location = parse_address(address)
        if scheme not in DASK_SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}")
        if scheme != "inproc":
            host, port = parse_host_port(location)
            if not host or not 1 <= int(port) <= 65535:
                raise ValueError("no host" if not host else f"port {port} outside [1, 65535]")
    except (ValueError, TypeError) as err:
        raise _scheduler_error(flag, address, f"{form} ({err})") from None
    unreachable = f"no Dask scheduler answered within {SCHEDULER_TIMEOUT_S:g} s"
    if scheme in ("tcp", "ws"):  # a quick probe, so that a wrong port is one line at once
        try:
            socket.create_connection((host, int(port)), timeout=SCHEDULER_TIMEOUT_S).close()
        except OSError as err:
            raise _scheduler_error(flag, address, f"{unreachable} ({os_reason(err)})") from None
    try:
        return Client(address, timeout=f"{SCHEDULER_TIMEOUT_S}s")
    except (OSError, ValueError, TypeError) as err:
        text = " ".join(str(err).split())[:200]
        raise _scheduler_error(flag, address, f"{unreachable} ({type(err).__name__}: {text})") from None
