"""``inception doctor``: what this machine can do, one line per fact, whatever is broken.

Each probe imports or runs one thing and reports what it found; a probe that fails becomes a
fact saying so (never a traceback). The advice at the end names the extra to install for what
is missing, from the driver version where a GPU is present.
"""

from __future__ import annotations

import importlib
import importlib.util
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass
from importlib import resources

from . import __version__
from .cpu import has_vnni, machine_name
from .errors import first_line
from .runtime.onnxruntime_backend import session_options


@dataclass
class Fact:
    name: str
    value: str
    ok: bool | None = None  # None: information only

    def line(self) -> str:
        mark = {True: "ok", False: "!!", None: "  "}[self.ok]
        return f"{mark} {self.name:<16} {self.value}"


def _module_version(name: str) -> str | None:
    """The module's version, None when it is not installed; raises when it is but cannot import."""
    if importlib.util.find_spec(name.split(".")[0]) is None:
        return None
    module = importlib.import_module(name)
    return str(getattr(module, "__version__", "installed"))


def _probe(name: str, probe) -> list[Fact]:
    try:
        return probe()
    except Exception as e:  # noqa: BLE001 - the doctor reports every failure as a fact
        return [Fact(name, f"error: {first_line(e)}", False)]


def _python() -> list[Fact]:
    return [
        Fact("python", f"{platform.python_version()} ({platform.system()} {platform.machine()})"),
        Fact("inception-deploy", __version__),
    ]


def _cpu() -> list[Fact]:
    vnni = has_vnni()
    note = {
        True: "",
        None: "",
        False: " (8-bit INT8 weights can saturate here: the cpu target's 7-bit weights cannot)",
    }[vnni]
    return [Fact("cpu", machine_name() + note)]


def _libraries() -> list[Fact]:
    facts = []
    for name in ("numpy", "onnx", "torch", "openvino"):
        try:
            version = _module_version(name)
        except Exception as e:  # noqa: BLE001
            facts.append(Fact(name, f"installed but cannot be imported: {first_line(e)}", False))
            continue
        if version is None:
            facts.append(
                Fact(
                    name,
                    "not installed" + (" (needed to export: the [export] extra)" if name in ("onnx", "torch") else ""),
                )
            )
        elif name == "torch":
            import torch

            cuda = torch.version.cuda
            facts.append(
                Fact(
                    name,
                    f"{version} ({f'CUDA {cuda} build' if cuda else 'CPU build'}"
                    f"{', GPU usable' if cuda and torch.cuda.is_available() else ''})",
                    True,
                )
            )
        else:
            facts.append(Fact(name, version, True))
    return facts


def _onnxruntime() -> list[Fact]:
    import onnxruntime as ort

    facts = [Fact("onnxruntime", f"{ort.__version__} ({ort.get_device()} build)", True)]
    model = resources.files("inception_deploy").joinpath("data/identity.onnx").read_bytes()
    for provider in ort.get_available_providers():
        try:
            fallback = [] if provider == "CPUExecutionProvider" else ["CPUExecutionProvider"]
            session = ort.InferenceSession(model, session_options(), providers=[provider, *fallback])
            used = session.get_providers()[0]
        except Exception as e:  # noqa: BLE001
            facts.append(Fact(f"  {provider}", f"does not load: {first_line(e)}", False))
            continue
        if used == provider:
            facts.append(Fact(f"  {provider}", "loads", True))
        else:  # onnxruntime-gpu without its CUDA/cuDNN libraries silently runs on the CPU
            facts.append(
                Fact(f"  {provider}", f"listed, but a session falls back to {used} (libraries missing?)", False)
            )
    return facts


def _nvidia_smi() -> list[Fact]:
    if shutil.which("nvidia-smi") is None:
        return [Fact("nvidia driver", "nvidia-smi not found (no NVIDIA driver)")]
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    if out.returncode != 0:
        return [Fact("nvidia driver", f"nvidia-smi failed: {(out.stderr or out.stdout).strip()[:200]}", False)]
    return [Fact("gpu", line.strip(), True) for line in out.stdout.strip().splitlines()]


def _tensorrt() -> list[Fact]:
    from .runtime.tensorrt_backend import TensorRTUnavailable, cuda_version, current_gpu, import_cudart, import_tensorrt

    facts = []
    if importlib.util.find_spec("tensorrt") is None:
        facts.append(Fact("tensorrt", "not installed"))
    else:
        try:
            facts.append(Fact("tensorrt", import_tensorrt("doctor").__version__, True))
        except TensorRTUnavailable as e:
            facts.append(Fact("tensorrt", str(e).removeprefix("doctor: "), False))
    try:
        cudart = import_cudart("doctor")
    except TensorRTUnavailable:
        facts.append(Fact("cuda-python", "not installed"))
        return facts
    version = _module_version("cuda.bindings") if importlib.util.find_spec("cuda.bindings") else "installed"
    err, driver = cudart.cudaDriverGetVersion()
    _, runtime = cudart.cudaRuntimeGetVersion()
    facts.append(
        Fact(
            "cuda-python",
            f"{version} (CUDA runtime {cuda_version(runtime)}, driver supports CUDA {cuda_version(driver)})",
            bool(driver) and driver >= runtime,
        )
    )
    try:
        gpu = current_gpu(cudart)
        facts.append(Fact("cuda gpu", f"{gpu['name']} (compute capability {gpu['compute_capability']})", True))
    except TensorRTUnavailable as e:
        facts.append(Fact("cuda gpu", str(e), False))
    return facts


def _advice(facts: list[Fact]) -> list[Fact]:
    by_name = {f.name: f for f in facts}
    gpus = [f for f in facts if f.name == "gpu"]
    tips = []
    if gpus:
        driver = gpus[0].value.split(",")[1].strip() if gpus[0].value.count(",") >= 2 else ""
        major = int(driver.split(".")[0]) if driver.split(".")[0].isdigit() else 0
        extra = "tensorrt-cu13" if major >= 580 else "tensorrt-cu12"
        if by_name.get("tensorrt") and not by_name["tensorrt"].ok:
            tips.append(f"TensorRT engines: pip install 'inception-deploy[{extra}]' (driver {driver})")
        if "CUDAExecutionProvider" not in " ".join(f.name for f in facts):
            tips.append("ONNX Runtime on the GPU: pip uninstall onnxruntime && pip install 'inception-deploy[gpu]'")
    if by_name.get("torch") and by_name["torch"].ok is None:
        tips.append("exporting models: pip install torch==2.13.0 && pip install 'inception-deploy[export]'")
    return [Fact("advice", tip) for tip in tips] or [Fact("advice", "nothing to install for what this machine has")]


def diagnose() -> list[Fact]:
    facts = []
    for name, probe in (
        ("python", _python),
        ("cpu", _cpu),
        ("libraries", _libraries),
        ("onnxruntime", _onnxruntime),
        ("nvidia driver", _nvidia_smi),
        ("tensorrt", _tensorrt),
    ):
        facts += _probe(name, probe)
    return facts + _probe("advice", lambda: _advice(facts))


def as_json(facts: list[Fact]) -> list[dict]:
    return [asdict(f) for f in facts]
