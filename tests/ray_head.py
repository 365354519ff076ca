"""A Ray head of the tests' own on 127.0.0.1, stopped by process id: ``ray stop --force`` would
stop every Ray cluster of the machine, not only ours."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import psutil

BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ray_head(cpus: int = 2):
    """``ray start --head`` with its own port and temp folder; yields its address. After, the
    processes it started (their command lines name its folder or port, and their children) are
    stopped, and the folder removed."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    start = [os.path.join(BIN, "ray"), "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1"]
    start += ["--temp-dir", temp, "--num-cpus", str(cpus), "--include-dashboard", "false", "--disable-usage-stats"]
    try:
        subprocess.run(start, check=True, capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        stop_processes(ours(temp, port))
        shutil.rmtree(temp, ignore_errors=True)


def ours(temp: str, port: int) -> list[psutil.Process]:
    """The processes of the head started with ``temp`` and ``port``, and their descendants."""
    me = psutil.Process()
    spared = {me.pid, *(p.pid for p in me.parents())}  # whoever runs us may name the folder too
    found = {}
    for process in psutil.process_iter(["cmdline"]):
        if process.pid in spared:
            continue
        line = " ".join(process.info["cmdline"] or ())
        if temp in line or f":{port} " in f"{line} " or f":{port}," in line:
            for p in [process, *_children(process)]:
                found[p.pid] = p
    return list(found.values())


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def stop_processes(processes: list[psutil.Process], grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL for whatever still runs after ``grace`` seconds (the head's GCS server,
    raylet and monitor outlast a SIGTERM by more than 10 s: a longer grace only waited)."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=grace)
