"""``decodex app``: start the Streamlit dashboard (``app/dashboard/main.py``)."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from decodex.app.cli_args import port_number
from decodex.core.errors import ArgumentError

SWEEPS_ROOT_ENV = "DECODEX_SWEEPS_ROOT"  # read by app/dashboard/untrusted.py (sweeps_root)

DASHBOARD = Path(__file__).resolve().parent / "dashboard" / "main.py"
DEFAULT_PORT = 8501
UPLOAD_LIMIT_MB = 1  # Streamlit's own cap on an upload; the dashboard's parsers refuse above 256 kB


def streamlit_command(port: int, address: str) -> list[str]:
    """The ``streamlit run`` command line of the dashboard on ``address``:``port``. Always
    headless: the server opens no browser and asks nothing on the terminal (a first non-headless
    run would prompt for an e-mail address); open the printed URL. An uncaught error shows no
    traceback in the browser (``client.showErrorDetails none``): the pages report their own errors
    in one line (``app/dashboard/guard.py``)."""
    return [sys.executable, "-m", "streamlit", "run", str(DASHBOARD),
            "--server.port", str(port), "--server.address", address, "--server.headless", "true",
            "--server.maxUploadSize", str(UPLOAD_LIMIT_MB),
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
            "--client.showErrorDetails", "none"]


def run_server(command: list[str]) -> int:
    """Run ``command`` so that stopping ``decodex app`` stops the server: on POSIX this process
    becomes the server (``exec``: SIGINT and SIGTERM reach it, no orphan is left); elsewhere the
    server is a child whose exit status is returned, terminated when this process is interrupted."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(command[0], command)  # does not return
    process = subprocess.Popen(command)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()


def check_address(address: str, port: int) -> None:
    """Refuse, in one line, an address this machine cannot bind (unknown name, not local) or a
    port already in use, before the server starts."""
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise ArgumentError(f"--address {address!r}: not an address or host name here ({err})") from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(sockaddr)
        except OSError as err:
            raise ArgumentError(f"cannot serve on {address}:{port}: {err.strerror or err}") from None


def sweeps_root_dir(text: str) -> str:
    """argparse type of ``--sweeps-root``: an existing directory, returned resolved (absolute,
    symlinks followed); ArgumentError otherwise."""
    path = Path(text).expanduser()
    if not text or not path.is_dir():
        raise ArgumentError(f"--sweeps-root {text!r}: not a directory")
    return str(path.resolve())


def cmd_app(args: argparse.Namespace) -> int:
    """Run the dashboard until it is stopped (Ctrl-C, SIGTERM); returns Streamlit's exit status
    where the server runs as a child (non-POSIX systems). ``--sweeps-root`` is handed to the
    server as ``$DECODEX_SWEEPS_ROOT``."""
    check_address(args.address, args.port)
    if args.sweeps_root is not None:
        os.environ[SWEEPS_ROOT_ENV] = sweeps_root_dir(args.sweeps_root)
    command = streamlit_command(args.port, args.address)
    host = "localhost" if args.address in ("127.0.0.1", "localhost") else args.address
    print(f"Decodex dashboard: open http://{host}:{args.port} in a browser (Ctrl-C stops it)", flush=True)
    return run_server(command)


def add_app_parser(sub: Any) -> None:
    """Register ``decodex app``."""
    p = sub.add_parser("app", help="start the dashboard (a Streamlit server; open the URL it prints)")
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--address", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 serves the network)")
    p.add_argument("--sweeps-root", default=None, metavar="DIR",
                   help=f"the only directory under which the Sweep explorer opens sweep folders (sets "
                        f"${SWEEPS_ROOT_ENV}; default: ${SWEEPS_ROOT_ENV}, else the directory the server starts in)")
    p.set_defaults(func=cmd_app)
