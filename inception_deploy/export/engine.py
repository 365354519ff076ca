"""ONNX -> TensorRT engine, written against the TensorRT 10.x and 11.x Python API.

Precision comes from the ONNX graph: the network is created strongly typed wherever TensorRT
has that flag (always on in 11, where the FP16/INT8 builder flags and calibrators are gone).
Every API difference is feature-detected by attribute name, never by version string or by a
hard-coded enum bit. Beside each engine goes ``X.plan.json`` (the ONNX metadata plus TensorRT
version, GPU, profile and builder options); the plan itself stays a plain plan trtexec loads.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InceptionDeployError
from ..fileio import Kind, atomic_path, check_writable, sha256_file
from ..graph import load_onnx
from ..metadata import ENGINE, ENGINE_SIDECAR, Metadata, onnx_metadata, sidecar_path
from ..progress import Progress, heartbeat, silent

log = logging.getLogger(__name__)


class EngineNotBuilt(InceptionDeployError):
    """TensorRT or a GPU is missing here: the ONNX is fine, only the engine was skipped."""


@dataclass
class EngineResult:
    path: Path
    sidecar: Path
    seconds: float
    metadata: Metadata


def engine_unavailable_reason() -> str | None:
    """Why no engine can be built here, or None when TensorRT and a GPU are present."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return (
            "TensorRT is not installed (pip install 'inception-deploy[tensorrt-cu13]', or [tensorrt-cu12] for "
            "a CUDA 12 driver, on a machine with an NVIDIA GPU)"
        )
    from ..runtime.tensorrt_backend import current_gpu, import_cudart, import_tensorrt

    try:
        import_tensorrt("building an engine")
        current_gpu(import_cudart("building an engine"))
    except InceptionDeployError as e:
        return str(e)
    return None


def network_flags(trt) -> tuple[int, bool]:
    """(creation flags, strongly typed?): STRONGLY_TYPED where it exists (opt-in on 10.x, the
    only mode on 11.x); EXPLICIT_BATCH only on TensorRT without it (8.x; ignored on 10, gone on 11)."""
    flags_enum = trt.NetworkDefinitionCreationFlag
    if hasattr(flags_enum, "STRONGLY_TYPED"):
        return 1 << int(flags_enum.STRONGLY_TYPED), True
    if hasattr(flags_enum, "EXPLICIT_BATCH"):
        return 1 << int(flags_enum.EXPLICIT_BATCH), False
    return 0, False


def build_engine(
    onnx_path,
    engine_path=None,
    *,
    min_batch: int = 1,
    opt_batch: int | None = None,
    max_batch: int = 32,
    workspace_gib: float = 4,
    timing_cache=None,
    opt_level: int = 3,
    version_compatible: bool = False,
    hardware_compatibility: str | None = None,
    progress: Progress | None = None,
) -> EngineResult:
    """Build ``engine_path`` (default: the ONNX name with .plan) from an exported ONNX file.
    ``opt_batch`` (the batch TensorRT tunes for) defaults to 8 kept within min..max. ``progress``
    hears when the build starts and, every 30 s, that it is still running."""
    from ..runtime.tensorrt_backend import create, current_gpu, import_cudart, import_tensorrt, make_logger

    start = time.perf_counter()
    onnx_path = Path(onnx_path)
    engine_path = Path(engine_path) if engine_path else onnx_path.with_suffix(".plan")
    if opt_batch is None:
        opt_batch = min(max(8, min_batch), max_batch)
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise InceptionDeployError(
            f"batch profile must satisfy 1 <= min <= opt <= max, got {min_batch}/{opt_batch}/{max_batch}"
        )
    metadata = onnx_metadata(load_onnx(onnx_path), onnx_path)
    if metadata is None:
        raise InceptionDeployError(f"{onnx_path}: no inception_deploy metadata; export it with inception-export")
    check_writable(engine_path, ENGINE, inputs=[onnx_path])
    if timing_cache:
        check_writable(timing_cache, TIMING_CACHE, inputs=[onnx_path])
    reason = engine_unavailable_reason()
    if reason:
        raise EngineNotBuilt(f"{engine_path} not built: {reason}")
    trt = import_tensorrt("building an engine")
    gpu = current_gpu(import_cudart("building an engine"))
    logger = make_logger(trt)
    builder = create(trt.Builder, str(engine_path), logger)
    flags, strongly_typed = network_flags(trt)
    network = builder.create_network(flags)
    parser = create(trt.OnnxParser, str(onnx_path), logger, network)
    if not parser.parse_from_file(str(onnx_path)):
        raise InceptionDeployError(f"{onnx_path}: TensorRT's ONNX parser failed: {parser_errors(parser)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = opt_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # per-layer precision for the report
    if not strongly_typed:  # TensorRT 8.x: precision still needs the (since removed) builder flags
        precision = metadata.precision
        for flag in ("FP16",) if precision == "fp16" else ("INT8", "FP16") if precision == "int8" else ():
            config.set_flag(getattr(trt.BuilderFlag, flag))
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if hardware_compatibility:
        levels = trt.HardwareCompatibilityLevel.__members__
        hardware_compatibility = hardware_compatibility.lower()
        if hardware_compatibility.upper() not in levels:
            raise InceptionDeployError(
                f"unknown hardware compatibility {hardware_compatibility!r}; "
                f"this TensorRT offers: {', '.join(n.lower() for n in levels)}"
            )
        config.hardware_compatibility_level = levels[hardware_compatibility.upper()]

    profile_shapes = _add_profile(builder, network, config, min_batch, opt_batch, max_batch)
    _attach_timing_cache(config, timing_cache, logger)

    say = progress or silent
    batches = f"batch {min_batch}" if min_batch == max_batch else f"batch {min_batch}-{max_batch}, opt {opt_batch}"
    say(
        f"building the TensorRT engine {engine_path} ({metadata.precision}, "
        f"{batches if profile_shapes else 'static batch'}); this takes minutes..."
    )
    with heartbeat(say, "building the TensorRT engine"):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        errors = "; ".join(logger.errors[-3:]) or "no error logged"
        raise InceptionDeployError(f"{onnx_path}: TensorRT could not build the engine: {errors}")
    layers = precision_report(trt, logger, bytes(serialized), version_compatible)
    _warn_precision(engine_path, metadata.precision, layers)
    sidecar = metadata.updated(
        engine_path,
        drop=("parity",),  # the ONNX's parity says nothing about the engine
        layers=layers,
        tensorrt={
            "version": trt.__version__,
            "strongly_typed": strongly_typed,
            "version_compatible": version_compatible,
            "hardware_compatibility": hardware_compatibility,
            "opt_level": opt_level,
            "workspace_gib": workspace_gib,
        },
        gpu=gpu,
        io={"input": network.get_input(0).name, "output": network.get_output(0).name},  # for Triton configs
        profile=profile_shapes,
        onnx_file=onnx_path.name,
        onnx_sha256=sha256_file(onnx_path),
        max_batch=profile_shapes["max"][0] if profile_shapes else metadata.batch,
    )
    with atomic_path(engine_path, ENGINE) as plan_tmp:  # both or neither: the sidecar goes in first, then the plan
        plan_tmp.write_bytes(bytes(serialized))
        with atomic_path(sidecar_path(engine_path), ENGINE_SIDECAR) as sidecar_tmp:
            sidecar_tmp.write_text(sidecar.to_json(indent=1))
    if timing_cache:
        _save_timing_cache(config, timing_cache)
    return EngineResult(engine_path, sidecar_path(engine_path), time.perf_counter() - start, sidecar)


def precision_report(trt, logger, plan: bytes, version_compatible: bool) -> dict | None:
    """What the built engine really runs: layers per precision (from each layer's output format in
    the engine inspector's JSON) and the reformat / cast layers TensorRT inserted. None when the
    inspector gives no per-layer detail."""
    from ..runtime.tensorrt_backend import deserialize

    engine = deserialize(trt, logger, plan, "the precision report", version_compatible)
    if engine is None:
        return None
    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    layers = [layer for layer in info.get("Layers", []) if isinstance(layer, dict)]
    if not layers:
        return None
    report = {"layers": len(layers), "precisions": {}, "reformat": 0, "cast": 0}
    for layer in layers:
        kind = str(layer.get("LayerType", ""))
        if kind == "Reformat":
            report["reformat"] += 1
        elif kind == "Cast":
            report["cast"] += 1
        outputs = layer.get("Outputs") or [{}]
        precision = _format_precision(str(outputs[0].get("Format/Datatype", "")))
        report["precisions"][precision] = report["precisions"].get(precision, 0) + 1
    return report


def _format_precision(text: str) -> str:
    """'Channel major FP16 format where channel % 8 == 0' -> 'fp16'; 'Row major Int8 format' -> 'int8'."""
    words = text.lower().replace("(", " ").replace(")", " ").split()
    for token, name in (
        ("int8", "int8"),
        ("fp8", "fp8"),
        ("bf16", "bf16"),
        ("fp16", "fp16"),
        ("half", "fp16"),
        ("fp32", "fp32"),
        ("float", "fp32"),
        ("int32", "int32"),
        ("int64", "int64"),
        ("bool", "bool"),
    ):
        if token in words:
            return name
    return "other"


def _warn_precision(engine_path, precision, layers) -> None:
    """The most common complaint about reduced-precision engines: they silently run FP32."""
    if layers is None:
        log.warning("%s: TensorRT gave no per-layer information; precision not verified", engine_path)
    elif precision in ("fp16", "int8") and not layers["precisions"].get(precision):
        log.warning(
            "%s: a %s engine with no %s layer (%s): check the ONNX's precision",
            engine_path,
            precision,
            precision,
            describe_layers(layers),
        )


def describe_layers(layers: dict | None) -> str:
    if not layers:
        return "no per-layer information"
    parts = [f"{precision} {count}" for precision, count in sorted(layers["precisions"].items(), key=lambda x: -x[1])]
    extra = [f"{layers[k]} {k}" for k in ("reformat", "cast") if layers[k]]
    return f"{layers['layers']} layers: " + ", ".join(parts + extra)


# A timing cache is read and rewritten in place: the user names the file for exactly that, and
# TensorRT's serialization has no documented signature to recognise it by.
TIMING_CACHE = Kind("a TensorRT timing cache", lambda path: True)


def _attach_timing_cache(config, path, logger) -> None:
    """Load ``path`` into the build (a new cache when there is none). A cache TensorRT rejects
    (corrupt, or made on another GPU or TensorRT version: ``set_timing_cache`` returns False) is
    replaced by a new one with a warning; the file is rewritten after the build."""
    blob = Path(path).read_bytes() if path and Path(path).is_file() else b""
    logged = len(logger.errors)
    cache = config.create_timing_cache(blob) if blob else None
    if blob and (cache is None or not config.set_timing_cache(cache, ignore_mismatch=False)):
        reason = "; ".join(logger.errors[logged:]) or "corrupt, or made on another GPU or TensorRT version"
        log.warning("%s: timing cache not usable here (%s); starting a new one", path, reason)
        cache = None
    if cache is None:
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _save_timing_cache(config, path) -> None:
    cache = config.get_timing_cache()
    if cache is None:
        log.warning("%s: TensorRT returned no timing cache; not saved", path)
        return
    with atomic_path(path, TIMING_CACHE) as tmp:
        tmp.write_bytes(bytes(cache.serialize()))


def _add_profile(builder, network, config, min_batch, opt_batch, max_batch) -> dict | None:
    """An optimization profile over the batch dimension, when the network's batch is dynamic."""
    tensor = network.get_input(0)
    shape = tuple(tensor.shape)
    if shape[0] != -1:
        return None
    rest = tuple(int(d) for d in shape[1:])
    shapes = {k: (b,) + rest for k, b in (("min", min_batch), ("opt", opt_batch), ("max", max_batch))}
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    return {"input": tensor.name, **{k: list(v) for k, v in shapes.items()}}


def parser_errors(parser) -> str:
    """The parser's errors as 'node N (Op name): message', joined."""
    parts = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        detail = " ".join(str(v) for v in (_call(e, "node_operator"), _call(e, "node_name")) if v)
        parts.append(f"node {_call(e, 'node')}{f' ({detail})' if detail else ''}: {_call(e, 'desc')}")
    return "; ".join(parts) or "no error reported"


def _call(obj, name):
    attr = getattr(obj, name, None)
    return attr() if callable(attr) else attr
