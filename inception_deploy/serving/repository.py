"""Artifacts -> an NVIDIA Triton model repository.

For each model name (a file's stem), four Triton models:

    <name>/                 the classifier: config.pbtxt, labels.txt, 1/model.onnx or 1/model.plan
    <name>_preprocess/      Python backend: encoded JPEG/PNG bytes -> the artifact's exact input
    <name>_softmax/         Python backend: logits -> probabilities (as inception-run prints them)
    <name>_pipeline/        ensemble of the three: image bytes in, top-k labels out

The configs are built as Triton's own ModelConfig protobuf (from tritonclient), so a field name
or type that Triton does not know fails here, not on the server. The repository is written
beside its destination and renamed into place only when complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import InceptionDeployError, first_line, printable, setting
from ..fileio import check_folder_writable, current_umask, write_failure
from ..metadata import Metadata, check_graph_shape, read_sidecar
from ..runtime.base import ENGINE_SUFFIXES, ONNX_SUFFIXES, resolve_metadata
from ..runtime.onnxruntime_backend import session_options

KINDS = ("auto", "cpu", "gpu")
ONNX_BACKENDS = ("onnxruntime", "openvino")
IMAGE_INPUT, PROBABILITIES = "IMAGE", "PROBABILITIES"
LABELS_FILE = "labels.txt"
LABELS_PARAMETER = "labels"  # the pipeline's config parameter holding the class names as JSON
# Triton's server and client libraries cap a dimension at int64 and a batch at this many rows
MAX_TRITON_BATCH = 1024


class RepositoryError(InceptionDeployError):
    """An artifact that cannot be served as asked."""


@dataclass
class Artifact:
    """What the repository needs to know about one model file."""

    path: Path
    kind: str  # "onnx" or "plan"
    metadata: Metadata
    input_name: str
    output_name: str
    dtype: str  # of the input and output: "float32" or "float16"
    max_batch: int  # 0: the file takes a fixed batch of one only
    profile_batches: tuple = ()  # an engine's optimization profile: (min, opt, max)


@dataclass
class WrittenModel:
    name: str
    platform: str
    files: list[Path]
    max_batch: int
    plans: dict = field(default_factory=dict)  # compute capability -> plan file, engines only


def inspect_artifact(path: str | os.PathLike, arch: str | None = None) -> Artifact:
    """Names, types, batch limits and metadata of an .onnx (read with ONNX Runtime, nothing run)
    or an engine (from its .json sidecar: TensorRT is not needed to write a repository)."""
    path = Path(path)
    if not path.is_file():
        raise RepositoryError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return _inspect_onnx(path, arch)
    if suffix in ENGINE_SUFFIXES:
        return _inspect_plan(path)
    raise RepositoryError(
        f"{path}: unknown model type {suffix or '(no suffix)'}; expected .onnx or a TensorRT "
        f"engine (.plan, .engine, .trt)"
    )


def _inspect_onnx(path: Path, arch: str | None) -> Artifact:
    import onnxruntime as ort

    options = session_options()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # read, do not compile
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types for unreadable graphs
        raise RepositoryError(f"{path}: not a loadable ONNX model ({first_line(e)})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise RepositoryError(
            f"{path}: has {len(inputs)} inputs and {len(outputs)} outputs; an image classifier has one of each"
        )
    shape, classes = inputs[0].shape, outputs[0].shape[-1]
    meta = resolve_metadata(
        session.get_modelmeta().custom_metadata_map, path, arch, classes if isinstance(classes, int) else 0
    )
    check_graph_shape(
        meta, path, [d if isinstance(d, int) else None for d in shape], classes if isinstance(classes, int) else None
    )
    dtypes = {"tensor(float)": "float32", "tensor(float16)": "float16"}
    if inputs[0].type not in dtypes or outputs[0].type != inputs[0].type:
        raise RepositoryError(
            f"{path}: input {inputs[0].type} and output {outputs[0].type}; Triton configs are "
            f"written for float32 or float16 input and output of the same type"
        )
    batch = shape[0]
    if isinstance(batch, int) and batch != 1:
        raise RepositoryError(
            f"{path}: takes a fixed batch of {batch}; Triton sends any batch up to "
            f"max_batch_size: export with a dynamic batch (the default)"
        )
    max_batch = 1 if isinstance(batch, int) else min(meta.max_batch or 64, MAX_TRITON_BATCH)
    return Artifact(path, "onnx", meta, inputs[0].name, outputs[0].name, dtypes[inputs[0].type], max_batch)


def _inspect_plan(path: Path) -> Artifact:
    sidecar = read_sidecar(path)
    if sidecar is None:
        raise RepositoryError(
            f"{path}: no {path.name}.json sidecar; Triton needs the engine's input shape, "
            f"preprocessing and labels (build it with inception-build)"
        )
    io = sidecar.io or _io_of_source_onnx(path, sidecar)
    profile = sidecar.profile
    batches = tuple(profile[k][0] for k in ("min", "opt", "max")) if profile else ()
    if batches and batches[0] != 1:
        raise RepositoryError(f"{path}: its profile starts at batch {batches[0]}; Triton sends batches from 1")
    max_batch = batches[-1] if batches else 1
    if not batches and (sidecar.batch or 1) != 1:
        raise RepositoryError(
            f"{path}: takes a fixed batch of {sidecar.batch}; build it with a batch profile ({setting('max_batch')})"
        )
    return Artifact(path, "plan", sidecar, io["input"], io["output"], sidecar.io_dtype, max_batch, batches)


def _io_of_source_onnx(path: Path, sidecar: Metadata) -> dict:
    """Tensor names of an engine whose sidecar predates the "io" entry: from the ONNX it was built
    from, when that file is still beside it."""
    source = path.parent / str(sidecar.onnx_file or "")
    if not sidecar.onnx_file or not source.is_file():
        raise RepositoryError(
            f"{path}: its sidecar does not name the input and output tensors and the ONNX it "
            f"was built from is not beside it; rebuild it with inception-build"
        )
    onnx = _inspect_onnx(source, None)
    return {"input": onnx.input_name, "output": onnx.output_name}


def model_name(path: Path) -> str:
    """A file's stem as a Triton model name (letters, digits, - and _)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem).strip("_")
    if not name:
        raise RepositoryError(f"{path}: cannot make a model name of its file name; rename it")
    return name


def write_repository(
    models,
    output: str | os.PathLike,
    *,
    arch: str | None = None,
    onnx_backend: str = "onnxruntime",
    kind: str = "auto",
    instances: int = 1,
    max_batch: int | None = None,
    preferred_batch: tuple[int, ...] = (),
    queue_delay_us: int = 1000,
    replace: bool = False,
    progress=None,
) -> list[WrittenModel]:
    """Write a Triton model repository serving ``models`` (.onnx files and engines) to ``output``.

    Each model is named after its file's stem; an engine beside the ONNX file it was built
    from (``v3.onnx``, ``v3.plan``) is model ``v3_trt``. Plans with the same file name (e.g.
    ``a100/v3.plan``, ``l4/v3.plan``) become one model with a plan per GPU (``cc_model_filenames``),
    when they were built by the same TensorRT from the same model. ``kind``: where ONNX models
    run (engines always run on the GPU); ``auto`` lets
    Triton pick the GPU when there is one. ``max_batch``: the largest batch the server forms
    (default: the artifact's limit). ``onnx_backend``: Triton's ONNX Runtime or OpenVINO backend.
    """
    if kind not in KINDS:
        raise RepositoryError(f"instance kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if onnx_backend not in ONNX_BACKENDS:
        raise RepositoryError(f"ONNX backend must be one of {', '.join(ONNX_BACKENDS)}, not {onnx_backend!r}")
    if instances < 1 or queue_delay_us < 0 or (max_batch is not None and not 1 <= max_batch <= MAX_TRITON_BATCH):
        raise RepositoryError("instances must be >= 1, the queue delay >= 0 and max batch 1..1024")
    if not models:
        raise RepositoryError("no models given")
    output = check_destination(output, replace)
    say = progress or (lambda line: None)
    by_kind: dict[tuple[str, str], list[Artifact]] = {}
    for path in models:
        artifact = inspect_artifact(path, arch)
        by_kind.setdefault((model_name(artifact.path), artifact.kind), []).append(artifact)
    # an engine built from an ONNX file shares its stem (v3.onnx -> v3.plan): the engine is v3_trt
    groups: dict[str, list[Artifact]] = {}
    for (name, file_kind), artifacts in by_kind.items():
        name += "_trt" if file_kind == "plan" and (name, "onnx") in by_kind else ""
        if name in groups:
            raise RepositoryError(
                f"{groups[name][0].path} and {artifacts[0].path}: both would be model {name!r}; rename one"
            )
        groups[name] = artifacts
    for name in groups:
        for suffix in ("_preprocess", "_softmax", "_pipeline"):
            if name + suffix in groups:
                raise RepositoryError(
                    f"{name + suffix}: a model file's name clashes with the helper model of {name}; rename it"
                )
    settings = dict(
        onnx_backend=onnx_backend,
        kind=kind,
        instances=instances,
        max_batch=max_batch,
        preferred_batch=tuple(preferred_batch),
        queue_delay_us=queue_delay_us,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp"))
    try:
        written = []
        for name, artifacts in groups.items():
            say(f"writing {name} ({', '.join(str(a.path) for a in artifacts)})")
            written.append(_write_model(staging, name, artifacts, settings))
        _replace_folder(staging, output)
    except OSError as e:
        failure = write_failure(e)
        if failure is None:
            raise
        raise RepositoryError(
            f"{output}: cannot write the repository ({failure.strerror}); nothing was changed there"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


def check_destination(output: str | os.PathLike, replace: bool = False) -> Path:
    """Fail before any work when the repository could not be written: tritonclient missing,
    ``output`` an existing file or non-empty folder that is not to be replaced, or a folder that
    ``replace`` may not empty because it is not a model repository (a user's documents)."""
    _config_module()
    output = Path(output)
    if output.exists() or output.is_symlink():
        if not output.is_dir():
            raise RepositoryError(f"{output}: exists and is not a folder; choose a new or empty folder")
        entries = list(output.iterdir())
        if entries and not replace:
            raise RepositoryError(
                f"{output}: already exists; choose an empty or new folder, or replace it ({setting('replace')})"
            )
        strangers = [e.name for e in entries if not _is_model_folder(e)]
        if strangers:
            raise RepositoryError(
                f"{output}: not a Triton model repository ({printable(strangers[0])} is not a "
                f"model folder with a config.pbtxt); {setting('replace')} replaces only a repository, "
                f"so nothing was touched"
            )
    check_folder_writable(output.parent, output)
    return output


def _is_model_folder(entry: Path) -> bool:
    """A folder of a Triton model repository: a real folder holding config.pbtxt, version folders
    and files a model's config names (as inception-triton writes them)."""
    return entry.is_dir() and not entry.is_symlink() and (entry / "config.pbtxt").is_file()


def _replace_folder(new: Path, dest: Path) -> None:
    """Put the complete ``new`` folder at ``dest``; an old ``dest`` is removed only afterwards."""
    os.chmod(new, 0o777 & ~current_umask())
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".old"))
        os.replace(dest, old / "repository")
    os.replace(new, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_model(root: Path, name: str, artifacts: list[Artifact], settings: dict) -> WrittenModel:
    first = artifacts[0]
    if first.kind == "onnx" and len(artifacts) > 1:
        raise RepositoryError(f"{first.path} and {artifacts[1].path}: both would be model {name!r}; rename one")
    plans = _plan_files(name, artifacts) if first.kind == "plan" else {}
    limit = min(a.max_batch for a in artifacts)
    max_batch = settings["max_batch"] or limit
    if max_batch > limit:
        raise RepositoryError(f"{first.path}: takes batches up to {limit}; max batch {max_batch} is too large")
    folder = root / name / "1"
    folder.mkdir(parents=True)
    files = []
    if plans:
        for cc, file_name in plans.items():
            files.append(_link_or_copy(next(a.path for a in artifacts if _cc(a) == cc), folder / file_name))
    else:
        files.append(_link_or_copy(first.path, folder / ("model.onnx" if first.kind == "onnx" else "model.plan")))
    labels = first.metadata.labels
    (root / name / LABELS_FILE).write_text("\n".join(labels) + "\n", "utf-8")
    config = _classifier_config(name, first, plans, max_batch, settings)
    _write_config(root / name, config)
    _write_helpers(root, name, first, max_batch, settings)
    platform = config.platform or config.backend
    return WrittenModel(name, platform, files, max_batch, plans)


def _cc(artifact: Artifact) -> str | None:
    return artifact.metadata.gpu.get("compute_capability")


def _plan_files(name: str, plans: list[Artifact]) -> dict:
    """compute capability -> file name, for plans that may share one model; {} for a single plan
    (Triton then loads model.plan on whichever GPU it has)."""
    first = plans[0]
    for other in plans[1:]:
        for what, get in (
            ("TensorRT version", lambda a: a.metadata.tensorrt.get("version")),
            ("precision", lambda a: a.metadata.precision),
            ("preprocessing", lambda a: a.metadata.preprocess),
            ("labels", lambda a: a.metadata.labels),
            ("tensor names", lambda a: (a.input_name, a.output_name, a.dtype)),
        ):
            if get(other) != get(first):
                raise RepositoryError(
                    f"{first.path} and {other.path}: differ in {what}; one Triton model serves "
                    f"plans of one model built by one TensorRT: give them different names"
                )
    if len(plans) == 1:
        return {}
    ccs = [_cc(a) for a in plans]
    if None in ccs:
        missing = plans[ccs.index(None)].path
        raise RepositoryError(
            f"{missing}: its sidecar records no GPU compute capability; cannot serve it beside another plan of {name!r}"
        )
    if len(set(ccs)) != len(ccs):
        raise RepositoryError(
            f"{name}: two plans were built on GPUs of compute capability {max(ccs, key=ccs.count)}; keep one"
        )
    return {cc: f"model_sm{cc.replace('.', '')}.plan" for cc in ccs}


def _link_or_copy(source: Path, dest: Path) -> Path:
    """A hard link where the file system allows it (model files are large), else a copy."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)
    return dest


def _config_module():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise RepositoryError(
            "writing Triton repositories needs tritonclient: pip install 'inception-deploy[triton]'"
        ) from None
    return model_config_pb2


def _triton_type(mc, dtype: str):
    return {"float32": mc.TYPE_FP32, "float16": mc.TYPE_FP16}[dtype]


def _classifier_config(name: str, artifact: Artifact, plans: dict, max_batch: int, settings: dict):
    mc = _config_module()
    config = mc.ModelConfig(name=name, max_batch_size=max_batch)
    size = artifact.metadata.preprocess.input_size
    if artifact.kind == "plan":
        config.platform = "tensorrt_plan"
        for cc, file_name in plans.items():
            config.cc_model_filenames[cc] = file_name
    elif settings["onnx_backend"] == "openvino":
        config.backend, config.default_model_filename = "openvino", "model.onnx"
        # the package's OpenVINO backend runs in f32 unless asked: bf16 on AMX CPUs would change results
        config.parameters["PERFORMANCE_HINT"].string_value = "LATENCY"
        config.parameters["INFERENCE_PRECISION_HINT"].string_value = "f32"
    else:
        config.platform = "onnxruntime_onnx"
    dtype = _triton_type(mc, artifact.dtype)
    config.input.add(name=artifact.input_name, data_type=dtype, dims=[3, size, size])
    config.output.add(
        name=artifact.output_name, data_type=dtype, dims=[artifact.metadata.num_classes], label_filename=LABELS_FILE
    )
    # preferred sizes as given, else an engine's profile (opt and max); ONNX: the largest batch that forms
    preferred = settings["preferred_batch"] or tuple(b for b in artifact.profile_batches[1:] if 1 < b <= max_batch)
    _batching(config, max_batch, preferred, settings["queue_delay_us"])
    kind = "gpu" if artifact.kind == "plan" else settings["kind"]
    config.instance_group.add(count=settings["instances"], kind=getattr(mc.ModelInstanceGroup, f"KIND_{kind.upper()}"))
    for batch in sorted({1, max_batch}):  # allocate the largest batch before the first request does
        warmup = config.model_warmup.add(name=f"zeros_batch_{batch}", batch_size=batch)
        warmup.inputs[artifact.input_name].CopyFrom(
            mc.ModelWarmup.Input(data_type=dtype, dims=[3, size, size], zero_data=True)
        )
    return config


def _batching(config, max_batch: int, preferred: tuple, queue_delay_us: int) -> None:
    """Dynamic batching up to ``max_batch``, waiting at most ``queue_delay_us`` to fill a batch."""
    if max_batch <= 1:
        return
    wrong = [b for b in preferred if not 1 <= b <= max_batch]
    if wrong:
        raise RepositoryError(f"preferred batch sizes {wrong} are outside 1..{max_batch} (the max batch)")
    config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    config.dynamic_batching.preferred_batch_size.extend(sorted(set(preferred)))


def _write_helpers(root: Path, name: str, artifact: Artifact, max_batch: int, settings: dict) -> None:
    """``<name>_preprocess``, ``<name>_softmax`` and the ``<name>_pipeline`` ensemble."""
    mc = _config_module()
    size, classes = artifact.metadata.preprocess.input_size, artifact.metadata.num_classes
    dtype = _triton_type(mc, artifact.dtype)
    labels = root / name / LABELS_FILE

    pre = mc.ModelConfig(name=f"{name}_preprocess", backend="python", max_batch_size=max_batch)
    pre.input.add(name=IMAGE_INPUT, data_type=mc.TYPE_STRING, dims=[1])
    pre.output.add(name=artifact.input_name, data_type=dtype, dims=[3, size, size])
    pre.parameters["preprocess"].string_value = json.dumps(artifact.metadata.preprocess.to_dict())
    pre.parameters["dtype"].string_value = artifact.dtype
    pre.instance_group.add(count=settings["instances"], kind=mc.ModelInstanceGroup.KIND_CPU)
    _batching(pre, max_batch, (), settings["queue_delay_us"])
    _copy_model_code(
        root / pre.name / "1", "preprocess_model.py", "inception_preprocess", ("preprocess.py", "errors.py")
    )  # the package's preprocessing, exactly as it generated this
    _write_config(root / pre.name, pre)

    soft = mc.ModelConfig(name=f"{name}_softmax", backend="python", max_batch_size=max_batch)
    soft.input.add(name="LOGITS", data_type=dtype, dims=[classes])
    soft.output.add(name=PROBABILITIES, data_type=mc.TYPE_FP64, dims=[classes], label_filename=LABELS_FILE)
    soft.instance_group.add(count=settings["instances"], kind=mc.ModelInstanceGroup.KIND_CPU)
    _copy_model_code(root / soft.name / "1", "softmax_model.py", "inception_postprocess", ("postprocess.py",))
    shutil.copyfile(labels, root / soft.name / LABELS_FILE)
    _write_config(root / soft.name, soft)

    pipe = mc.ModelConfig(name=f"{name}_pipeline", platform="ensemble", max_batch_size=max_batch)
    pipe.input.add(name=IMAGE_INPUT, data_type=mc.TYPE_STRING, dims=[1])
    pipe.output.add(name=PROBABILITIES, data_type=mc.TYPE_FP64, dims=[classes], label_filename=LABELS_FILE)
    # the labels for clients that rank the probabilities themselves (TritonClient: as a local run does)
    pipe.parameters[LABELS_PARAMETER].string_value = json.dumps(artifact.metadata.labels)
    steps = pipe.ensemble_scheduling.step
    steps.add(
        model_name=pre.name,
        model_version=-1,
        input_map={IMAGE_INPUT: IMAGE_INPUT},
        output_map={artifact.input_name: "pixels"},
    )
    steps.add(
        model_name=name,
        model_version=-1,
        input_map={artifact.input_name: "pixels"},
        output_map={artifact.output_name: "logits"},
    )
    steps.add(
        model_name=soft.name,
        model_version=-1,
        input_map={"LOGITS": "logits"},
        output_map={PROBABILITIES: PROBABILITIES},
    )
    (root / pipe.name / "1").mkdir(parents=True)  # an ensemble has no files, but Triton wants a version
    shutil.copyfile(labels, root / pipe.name / LABELS_FILE)
    _write_config(root / pipe.name, pipe)


def _copy_model_code(version: Path, module: str, package_name: str, modules: tuple) -> None:
    """``module`` as the version's model.py, with ``modules`` of this package copied beside it as
    package ``package_name`` (the server imports them from there)."""
    version.mkdir(parents=True)
    shutil.copyfile(resources.files("inception_deploy.serving.triton_models").joinpath(module), version / "model.py")
    package = version / package_name
    package.mkdir()
    (package / "__init__.py").write_text(f'"""inception_deploy\'s {", ".join(modules)}, copied for Triton."""\n')
    for name in modules:
        shutil.copyfile(resources.files("inception_deploy").joinpath(name), package / name)


def _write_config(folder: Path, config) -> None:
    from google.protobuf import text_format

    folder.mkdir(parents=True, exist_ok=True)
    text = text_format.MessageToString(config, use_short_repeated_primitives=True)
    (folder / "config.pbtxt").write_text(text, "utf-8")
