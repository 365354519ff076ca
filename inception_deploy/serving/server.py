"""Start and stop a real Triton Inference Server on a model repository.

The server is the ``tritonserver`` bundled with nvidia-pytriton (the ``serve`` extra: a CPU
build with only the Python backend), or one on PATH. The bundled one needs its backend folder
assembled from copies of its files and the stub for this Python, and library paths set so the
stub loads this Python's libpython (REFERENCE.md, "Triton on a CPU machine"). Backends the
server lacks (``onnxruntime``, ``openvino``) are supplied by the package's Python-based backend,
which runs the model with ``inception_deploy.runtime``.

The server runs in its own process group; ``stop()`` (also on Ctrl-C, SIGTERM and interpreter
exit) terminates the whole group, then kills what is left after a grace period.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import InceptionDeployError
from ..fileio import Kind, check_writable


def _server_log(path: Path) -> bool:
    """tritonserver's log lines start glog-style: severity, month and day, time ("I1206 23:50:01.1 ...")."""
    with open(path, "rb") as f:
        return re.match(rb"[IWEF]\d{4} \d\d:\d\d:\d\d", f.read(64)) is not None


SERVER_LOG = Kind("a Triton server log", _server_log)
STAND_IN_BACKENDS = ("onnxruntime", "openvino")


class ServerError(InceptionDeployError):
    """The server cannot be found, started or reached."""


@dataclass
class ModelState:
    name: str
    state: str  # READY, UNAVAILABLE, ...
    reason: str


@dataclass
class ServerBinary:
    executable: Path
    backends: Path | None  # the bundled build's backends folder, to assemble; None: the server's own
    libraries: Path | None


def find_server() -> ServerBinary:
    """The bundled tritonserver of nvidia-pytriton, else ``tritonserver`` on PATH."""
    try:
        import pytriton
    except ImportError:
        pytriton = None
    if pytriton is not None:
        root = Path(pytriton.__file__).parent / "tritonserver"
        executable = root / "bin" / "tritonserver"
        if executable.is_file():
            return ServerBinary(executable, root, Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs")
    on_path = shutil.which("tritonserver")
    if on_path:
        return ServerBinary(Path(on_path), None, None)
    raise ServerError(
        "no Triton server found: pip install 'inception-deploy[serve]' (bundles a CPU build of "
        "tritonserver), or put tritonserver on PATH (e.g. in NVIDIA's Triton container)"
    )


def check_python_for_stub() -> None:
    """The bundled server's Python stub (Triton 2.51) returns EMPTY outputs when the Python it
    embeds has numpy 2 (measured): refuse instead of serving wrong answers."""
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:
        raise ServerError(
            f"the bundled tritonserver's Python backend needs numpy < 2 in this Python "
            f"({sys.executable} has numpy {numpy.__version__}; its models would answer with empty "
            f"outputs): pip install 'numpy<2', or install the 'serve' extra, which pins it"
        )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class TritonServer:
    """``with TritonServer(repo) as server: ...`` -- a running server, stopped on exit.

    ``ports``: HTTP, gRPC and metrics ports (0: any free port). ``ready_timeout``: seconds to
    wait for the server to answer /v2/health/ready. ``log_path``: the file the server's output goes
    to (default: one in its work folder, removed by ``stop()``).
    """

    def __init__(
        self,
        repository: str | os.PathLike,
        *,
        host: str = "127.0.0.1",
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        ready_timeout: float = 120.0,
        log_path: str | os.PathLike | None = None,
        exit_on_error: bool = False,
    ):
        self.repository = Path(repository).resolve()
        if not self.repository.is_dir():
            raise ServerError(f"{repository}: no such model repository folder")
        self.host = host
        self.ports = {
            name: port or free_port(host)
            for name, port in (("http", http_port), ("grpc", grpc_port), ("metrics", metrics_port))
        }
        self.ready_timeout, self.exit_on_error = ready_timeout, exit_on_error
        self.binary = find_server()
        if log_path:
            check_writable(log_path, SERVER_LOG)  # written as the server runs: a regular file, never a FIFO or device
        self.workdir = Path(tempfile.mkdtemp(prefix="inception-serve-"))
        self.log_path = Path(log_path) if log_path else self.workdir / "server.log"
        self.process: subprocess.Popen | None = None
        self.stand_ins: list[str] = []

    @property
    def url(self) -> str:
        return f"{self._client_host()}:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host()}:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host()}:{self.ports['metrics']}/metrics"

    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    def start(self) -> "TritonServer":
        for name, port in self.ports.items():
            _check_port_free(self.host, port, name)
        command = [
            str(self.binary.executable),
            "--model-repository",
            str(self.repository),
            "--http-address",
            self.host,
            "--http-port",
            str(self.ports["http"]),
            "--grpc-address",
            self.host,
            "--grpc-port",
            str(self.ports["grpc"]),
            "--metrics-address",
            self.host,
            "--metrics-port",
            str(self.ports["metrics"]),
            "--exit-on-error",
            "true" if self.exit_on_error else "false",
            "--strict-readiness",
            "false",  # ready while a model that cannot load (a plan on a CPU) is listed
            "--exit-timeout-secs",
            "5",
            "--disable-auto-complete-config",
        ]
        env = dict(os.environ)
        if self.binary.backends is not None:  # the bundled CPU build: assemble its backends folder
            check_python_for_stub()
            command += ["--backend-directory", str(self._assemble_backends())]
            libraries = [sysconfig.get_config_var("LIBDIR"), str(self.binary.libraries)]
            env["LD_LIBRARY_PATH"] = os.pathsep.join(libraries + [env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
            # the stub embeds the first python3 on PATH: make it this one, with this package importable
            env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        with open(self.log_path, "wb") as output:
            self.process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )  # its own group: stop() reaches the stubs
        atexit.register(self.stop)
        self._wait_ready()
        return self

    def _assemble_backends(self) -> Path:
        """Copies (the server refuses symlinks out of its backend folder) of the Python backend
        and this Python's stub, plus the package's stand-ins for the backends the build lacks."""
        root = self.workdir / "backends"
        python = root / "python"
        python.mkdir(parents=True)
        source = self.binary.backends
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServerError(
                f"the bundled tritonserver has no Python backend stub for Python {version} "
                f"(it has: {', '.join(sorted(p.name for p in stub.parent.parent.iterdir()))})"
            )
        for file in (
            source / "backends" / "python" / "libtriton_python.so",
            source / "backends" / "python" / "triton_python_backend_utils.py",
            stub,
        ):
            shutil.copy2(file, python / file.name)
        stand_in = resources.files("inception_deploy.serving.triton_models").joinpath("runtime_backend.py")
        for name in STAND_IN_BACKENDS:
            if not (source / "backends" / name).exists():
                (root / name).mkdir()
                shutil.copyfile(stand_in, root / name / "model.py")
                self.stand_ins.append(name)
        return root

    def stand_ins_used(self) -> list[str]:
        """The stand-in backends some model of the repository runs on."""
        used = set()
        for config in self.repository.glob("*/config.pbtxt"):
            text = config.read_text("utf-8", "replace")
            used.update(
                name for name in self.stand_ins if re.search(rf'(backend:\s*"{name}"|platform:\s*"{name}_onnx")', text)
            )
        return sorted(used)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"tritonserver exited with code {self.process.returncode} while starting: {self.last_error()}"
                )
            if self._get("/v2/health/ready") is not None:
                return
            time.sleep(0.2)
        self.stop()
        raise ServerError(f"tritonserver was not ready after {self.ready_timeout:.0f} s: {self.last_error()}")

    def last_error(self) -> str:
        """The server log's last error line (E... from Triton, or a Python traceback's last line)."""
        lines = self._log_lines()
        errors = [line for line in lines if line.startswith("E") or "Error" in line]
        return (errors or lines or ["no output"])[-1].strip()[:500]

    def _get(self, path: str, method: str = "GET") -> bytes | None:
        """The body of a 200 answer from the HTTP endpoint, None for anything else."""
        request = urllib.request.Request(
            f"http://{self.url}{path}", method=method, data=b"{}" if method == "POST" else None
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.read() if response.status == 200 else None
        except (urllib.error.URLError, OSError):
            return None

    def _log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text("utf-8", "replace").splitlines()
        except OSError:
            return []

    def models(self) -> list[ModelState]:
        """Every model of the repository with its load state and, when not ready, Triton's reason
        (for a config the server could not even parse, the parser's line:column message from its log)."""
        body = self._get("/v2/repository/index", method="POST")
        if body is None:
            raise ServerError(f"the server at {self.url} did not list its models")
        unparsed = self._poll_failures()
        return [
            ModelState(
                m["name"],
                m.get("state", "UNAVAILABLE"),
                m.get("reason") or unparsed.get(m["name"], "" if "state" in m else "not loaded"),
            )
            for m in json.loads(body)
        ]

    def _poll_failures(self) -> dict[str, str]:
        """Model folder -> why the server could not read it, from its log: "Poll failed for model
        directory 'x': failed to read text proto" follows protobuf's "Error parsing ...: L:C: ..."."""
        reasons, parser_error = {}, None
        for line in self._log_lines():
            if "Error parsing text-format" in line:
                parser_error = line.split("inference.ModelConfig: ", 1)[-1].strip()
            found = re.search(r"Poll failed for model directory '([^']+)': (.*?)\"?$", line)
            if found:
                name, reason = found.groups()
                reasons[name] = f"config.pbtxt {parser_error}" if parser_error and "text proto" in reason else reason
                parser_error = None
        return reasons

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return response.read().decode()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the server's process group, SIGKILL to whatever is left after ``grace`` s."""
        if self.process is not None:
            if self.process.poll() is None:
                _signal_group(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(grace)
                except subprocess.TimeoutExpired:
                    pass
            _signal_group(self.process.pid, signal.SIGKILL)  # stubs the server left behind, if any
            self.process.wait()
            atexit.unregister(self.stop)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            s.bind((host, port))
        except OSError as e:
            raise ServerError(
                f"cannot serve {what} on {host}:{port} ({e.strerror}); choose another --{what}-port"
            ) from None
