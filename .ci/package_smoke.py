"""Smoke test of an installed Decodex wheel, run from a neutral folder by .ci/package-smoke.

Usage: python package_smoke.py WHEEL WORKDIR (with the venv's python that has the wheel
installed). Checks what a user gets from ``pip install decodex``: one top-level package, the data
inside it, the CLI's main commands, the CPU validation paths, the dashboard's health and its
shutdown on SIGTERM. Exits non-zero with the failed check's name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

BIN = Path(sys.executable).parent
DECODEX = str(BIN / "decodex")
STARTED = time.monotonic()


def check(name: str, ok: bool, detail: str = "") -> None:
    status = "ok  " if ok else "FAIL"
    print(f"[{time.monotonic() - STARTED:6.1f} s] {status} {name}" + (f": {detail}" if detail else ""), flush=True)
    if not ok:
        raise SystemExit(f"package smoke failed: {name}")


def run(*args: str, expect: int = 0, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([DECODEX, *args], capture_output=True, text=True, timeout=timeout, cwd="/")
    if proc.returncode != expect:
        print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n", file=sys.stderr)
    check(f"decodex {' '.join(args)} exits {expect}", proc.returncode == expect, f"got {proc.returncode}")
    return proc


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=300)


def wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    check("wheel holds only decodex/ and its dist-info", all(t == "decodex" or t.endswith(".dist-info") for t in tops),
          ", ".join(sorted(tops)))
    for needed in ("decodex/hw_models/catalog/devices/h100-sxm.toml", "decodex/workloads/catalog/llama3-8b.json",
                   "decodex/validation/targets/step3-cost-step3.toml", "decodex/validation/fits/gpu_efficiency.json",
                   "decodex/validation/data/vidur-profiling/LICENSE", "decodex/examples/sweeps/h100-batch-context.toml",
                   "decodex/app/dashboard/main.py"):
        check(f"wheel carries {needed}", needed in names)
    check("wheel carries validation records", any(n.startswith("decodex/validation/records/") and n.endswith(".csv")
                                                  for n in names))
    check("wheel carries no tests", not any("/tests/" in n or n.startswith("tests/") for n in names))


def imports() -> None:
    for name in ("sim", "app", "tests", "validation", "workloads", "hw_models", "mappers", "explore"):
        check(f"no top-level '{name}' package", python(f"import {name}").returncode != 0)
    proc = python("import decodex as dx; r = dx.estimate('llama3-8b', 'h100-sxm', 8, context=512); "
                  "print(dx.__version__, r.step_time_s, r.band_source)")
    check("import decodex; dx.estimate(...)", proc.returncode == 0 and "records of h100-sxm" in proc.stdout,
          (proc.stdout + proc.stderr).strip()[-300:])


def cli(work: Path) -> None:
    version = run("--version").stdout.strip()
    check("decodex --version", version.startswith("decodex "), version)
    step = json.loads(run("estimate", "--model", "llama3-8b", "--system", "h100-sxm", "--batch", "8", "--json").stdout)
    check("estimate has a band from the shipped records", step["band_source"] == "records of h100-sxm",
          step["band_source"])
    sim = json.loads(run("simulate", "--model", "llama3-8b", "--system", "h100-sxm", "--batch", "8", "--json").stdout)
    check("simulate step time > 0", sim["step_time_s"] > 0)
    served = json.loads(run("serve", "--model", "llama3-8b", "--system", "h100-sxm", "--rate", "2", "--requests", "50",
                            "--json").stdout)
    check("serve completes its requests", served["requests"] == 50 and served["output_tokens"] > 0,
          str(served.get("requests")))
    run("examples", "h100-batch-context", "--to", str(work / "space.toml"))
    run("sweep", str(work / "space.toml"), "--out", str(work / "sweep"), "--no-progress")
    check("sweep wrote its rows", any((work / "sweep").rglob("*.parquet")))
    targets = json.loads(run("reproduce", "--list", "--json").stdout)
    names = {t["name"] for t in targets}
    check("reproduce --list names the shipped targets", "step3-cost-step3" in names and len(names) >= 10,
          f"{len(names)} targets")
    run("validate", "cpu", "--quick", "--cases", "3", "--no-write")
    external = json.loads(run("validate", "external", "--sample", "50", "--json").stdout)
    check("validate external reads the shipped Vidur data", {"a100-80g", "h100-sxm"} <= set(external),
          ", ".join(external))
    gpu = run("validate", "gpu", expect=2)
    lines = [line for line in gpu.stderr.splitlines() if line.strip()]
    check("validate gpu without numba-cuda says so in one line", len(lines) == 1 and "Traceback" not in gpu.stderr,
          gpu.stderr.strip()[:200])
    piped = subprocess.Popen([DECODEX, "examples", "serve-rate"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd="/")
    assert piped.stdout is not None and piped.stderr is not None
    piped.stdout.close()  # the reader leaves before the command writes
    error = piped.stderr.read().decode()
    piped.wait(timeout=60)
    check("a closed pipe ends quietly", "Traceback" not in error, error.strip()[-200:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def dashboard() -> None:
    port = free_port()
    proc = subprocess.Popen([DECODEX, "app", "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd="/")
    deadline = time.monotonic() + 120
    health = ""
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                health = response.read().decode()
                break
        except OSError:
            time.sleep(0.5)
    check("decodex app answers its health check", health.strip() == "ok", health or f"exit {proc.poll()}")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    time.sleep(1)
    left = [p for p in Path("/proc").glob("[0-9]*")
            if p.joinpath("cmdline").exists() and f"{port}".encode() in p.joinpath("cmdline").read_bytes()
            and b"streamlit" in p.joinpath("cmdline").read_bytes()]
    check("SIGTERM to decodex app stops the server", not listening(port) and not left,
          f"port open: {listening(port)}, processes: {[p.name for p in left]}")


def main() -> None:
    wheel, work = Path(sys.argv[1]), Path(sys.argv[2])
    check("running outside any checkout", not Path("pyproject.toml").exists() and os.getcwd() == "/")
    wheel_contents(wheel)
    imports()
    cli(work)
    dashboard()
    print(f"package smoke passed in {time.monotonic() - STARTED:.0f} s")


if __name__ == "__main__":
    main()
