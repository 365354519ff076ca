"""Keras checkpoints of ``keras.applications`` InceptionV3, InceptionResNetV2 and Xception (as
published, fine-tuned, or with another class count) loaded into our v3, inception-resnet-v2 and
xception networks, with h5py only: no Keras or TensorFlow needed.

The three files Keras writes are read: ``.keras`` (a zip with ``model.weights.h5``),
``.weights.h5`` (Keras 3's ``save_weights``) and legacy ``.h5`` (``model.save`` in HDF5 and
Keras 2 / tf.keras files). A layer is found by its name, never by its position in the file:

- Keras 3 files key layers by class and position in ``model.layers`` (a topological order that
  is not the order the layers were made in) and record each layer's name beside its variables;
  legacy files key layers by name.
- ``keras.applications`` names only some layers (``block35_1_conv``, ``block2_sepconv1``...);
  the rest get automatic names ``conv2d``, ``conv2d_1``... counted up as layers are created
  (the count goes on across models built in one process), which is the order our modules are
  defined in. So the automatic names of each kind, sorted by their number, meet our modules in
  order. Same-shaped neighbours (InceptionC's 1x1 branch and pooling branch) make shapes alone
  useless as a key.

What the weights cannot say is checked in the model's config where the file has one (.keras,
legacy .h5): a top other than global average pooling and one Dense, or added layers, is refused
rather than loaded into a network that computes something else. Links and datasets that read
other files are refused too: h5py would follow them into local files.

Where Keras computes differently, the network is built with Keras's numerics (``BUILD_OPTIONS``,
applied by ``zoo.create_model``): v3's 3x3 average pools leave padding out of the mean, Xception's
batch norms use epsilon 1e-3 and its stride-2 max pools TensorFlow's "same" padding.
Inception-ResNet-v2 (timm's layout, itself ported from TensorFlow) needs neither.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InceptionDeployError, WeightsError, first_line
from ..fileio import check_input_file
from ..metadata import MAX_CLASSES, MAX_DOCUMENT_BYTES, load_json
from ..models.inception_resnet import Residual
from ..models.layers import BasicConv2d
from ..models.xception import SeparableConv2d
from ..preprocess import INCEPTION_MEAN, INCEPTION_STD, PreprocessConfig

# keras.applications' preprocess_input "tf" mode (x / 127.5 - 1: mean = std = 0.5 on [0, 1]) on the
# image resized straight to 299 x 299 (load_img / image_dataset_from_directory), aspect not kept
KERAS_PREPROCESS = PreprocessConfig(299, 299, "bilinear", INCEPTION_MEAN, INCEPTION_STD, keep_aspect=False)

# constructor options giving each network Keras's numerics (see the module docstring)
BUILD_OPTIONS = {
    "v3": {"count_include_pad": False},
    "inception-resnet-v2": {},
    "xception": {"bn_eps": 1e-3, "same_pooling": True},
}
KERAS_NAMES = {"v3": "InceptionV3", "inception-resnet-v2": "InceptionResNetV2", "xception": "Xception"}

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_SUFFIXES = (".keras", ".h5", ".hdf5")
# What a .keras archive's weights may inflate to, per float32 byte the network needs: float64 files
# take twice as much, and HDF5's own structure and the optimizer-free layer groups a few MB more
_WEIGHTS_BYTES_PER_FLOAT32_BYTE = 2
_HDF5_OVERHEAD_BYTES = 64 << 20
# variables of each layer kind in the order Keras 3 creates them (its files number them so). Three
# batch-norm variables are read as beta/mean/variance: keras.applications' BatchNormalization(scale=False);
# center=False never occurs there (another layout would not match the logits tests)
_BATCH_NORM_VARS = {
    4: ("gamma", "beta", "moving_mean", "moving_variance"),
    3: ("beta", "moving_mean", "moving_variance"),
}
_VARS = {
    "conv2d": ("kernel", "bias"),
    "separable_conv2d": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "dense": ("kernel", "bias"),
}
# Layer classes keras.applications builds these networks from, and what a fine-tuned top may add
# (any other one computes something our network does not: GlobalMaxPooling2D, Rescaling, ...)
_CONTAINERS = {"Functional", "Sequential", "Model"}
_KNOWN_CLASSES = _CONTAINERS | {
    "InputLayer",
    "Conv2D",
    "SeparableConv2D",
    "BatchNormalization",
    "Activation",
    "MaxPooling2D",
    "AveragePooling2D",
    "Concatenate",
    "Add",
    "CustomScaleLayer",
    "Lambda",
    "GlobalAveragePooling2D",
    "Dense",
    "Dropout",
    "Flatten",
}
_OUTPUT_ACTIVATIONS = ("linear", "softmax")  # ours returns the logits; the runtime prints the softmax


def is_keras_file(path: str | os.PathLike) -> bool:
    """A Keras file by its name (.keras, .h5, .hdf5) or by the HDF5 signature at its start."""
    path = Path(path)
    if path.name.lower().endswith(_SUFFIXES):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(8) == _HDF5_SIGNATURE
    except OSError:
        return False


@dataclass
class KerasLayer:
    """One layer with weights: its Keras name, kind (the snake-case class name: conv2d,
    batch_normalization, separable_conv2d, dense...; "other" for a custom layer's sublayer) and
    its variables by Keras's names, still on disk (h5py datasets) until a shape has been checked."""

    name: str
    kind: str
    variables: dict

    def describe(self) -> str:
        shapes = ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in self.variables.items())
        return f"{self.name} ({self.kind}: {shapes})"


@dataclass
class KerasFile:
    """The layers with weights, in the file's order, and the model's layers as its config lists
    them (``_config_layers``; None for a .weights.h5)."""

    layers: list
    config_layers: list | None


@dataclass(frozen=True)
class Slot:
    """One of our modules that takes one Keras layer: ``name`` where keras.applications names the
    layer, None where the layer has an automatic name (matched by creation order)."""

    module: str
    kind: str
    name: str | None = None


@contextlib.contextmanager
def open_keras(path: str | os.PathLike, max_weights_bytes: int):
    """The KerasFile at ``path``; its datasets can be read inside the ``with``. A .keras archive's
    weights are inflated into a temporary file, at most ``max_weights_bytes`` of them (a small
    archive can declare and inflate to gigabytes)."""
    import h5py

    path = Path(path)
    check_input_file(path, "checkpoint", WeightsError)
    try:
        with contextlib.ExitStack() as stack:
            config = None
            with open(path, "rb") as f:
                hdf5 = f.read(8) == _HDF5_SIGNATURE
            if not hdf5 and zipfile.is_zipfile(path):
                archive = stack.enter_context(zipfile.ZipFile(path))
                if "model.weights.h5" not in archive.namelist():
                    raise WeightsError(f"{path}: a zip archive without model.weights.h5, not a .keras file")
                if "config.json" in archive.namelist():
                    with tempfile.TemporaryFile() as member:
                        _inflate(archive, "config.json", member, MAX_DOCUMENT_BYTES, path)
                        member.seek(0)
                        config = load_json(member.read(), path, "config.json")
                source = stack.enter_context(tempfile.TemporaryFile())
                _inflate(archive, "model.weights.h5", source, max_weights_bytes, path)
                source.seek(0)
            elif not hdf5:
                what = "a zip archive, as .keras files are" if path.name.lower().endswith(".keras") else "an HDF5 file"
                raise WeightsError(f"{path}: not {what} (truncated, or another format?)")
            else:
                source = path
            h5 = stack.enter_context(h5py.File(source, "r"))
            if config is None and "model_config" in h5.attrs:  # legacy .h5 from model.save
                config = load_json(_text(h5.attrs["model_config"]), path, "model_config")
            config_layers = _config_layers(config, path)
            yield KerasFile(list(_layers(h5, config_layers, path)), config_layers)
    except InceptionDeployError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RecursionError, zipfile.BadZipFile) as e:
        raise WeightsError(f"{path}: not a readable Keras file ({first_line(e)})") from None


def _inflate(archive, name: str, out, limit: int, path) -> None:
    """Copy a zip member into the file ``out``, refused as soon as it declares or inflates to more
    than ``limit`` bytes; a member the zipfile module cannot decompress is one line too."""
    size = archive.getinfo(name).file_size
    if size > limit:
        raise WeightsError(
            f"{path}: {name} declares {_megabytes(size)}, more than this network's weights can take "
            f"({_megabytes(limit)})"
        )
    try:
        with archive.open(name) as member:
            written = 0
            while chunk := member.read(1 << 20):
                written += len(chunk)
                if written > limit:  # the declared size lied
                    raise WeightsError(
                        f"{path}: {name} inflates to more than this network's weights can take ({_megabytes(limit)})"
                    )
                out.write(chunk)
    except (NotImplementedError, RuntimeError, EOFError, OSError, zipfile.BadZipFile, zlib.error, lzma.LZMAError) as e:
        # NotImplementedError: a compression method zipfile lacks; RuntimeError: encrypted; OSError: bad bzip2
        raise WeightsError(f"{path}: cannot read {name} from the archive ({first_line(e)})") from None


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


def weights_budget(expected: dict) -> int:
    """The most bytes a Keras weights file of a network with state_dict ``expected`` can need."""
    float32_bytes = 4 * sum(t.numel() for t in expected.values() if t.is_floating_point())
    return _WEIGHTS_BYTES_PER_FLOAT32_BYTE * float32_bytes + _HDF5_OVERHEAD_BYTES


def _child(group, key: str, path):
    """``group[key]``, refused where it is a link or a dataset that reads another file: a
    checkpoint must not pull local files' bytes into exported weights."""
    import h5py

    link = group.get(key, getlink=True)
    if link is None:
        raise WeightsError(f"{path}: has no {group.name.rstrip('/')}/{key}; is this a Keras checkpoint?")
    if not isinstance(link, h5py.HardLink):
        raise WeightsError(f"{path}: {group.name}/{key} is a link to elsewhere; a checkpoint holds its own data")
    item = group[key]
    if isinstance(item, h5py.Dataset) and (item.external or item.is_virtual):
        raise WeightsError(f"{path}: {item.name} reads its data from other files; a checkpoint holds its own data")
    return item


def _dataset(group, key: str, path):
    import h5py

    item = _child(group, key, path)
    if not isinstance(item, h5py.Dataset):
        raise WeightsError(f"{path}: {item.name} is not a dataset of weights")
    return item


def _layers(h5, config_layers, path):
    if "_layer_checkpoint_dependencies" in h5:
        raise WeightsError(
            f"{path}: a tf.keras 2.13-2.15 .keras file, whose layout is not read; save the model "
            f"as .h5 with that version (model.save('model.h5'))"
        )
    if "layers" in h5 and "layer_names" not in h5.attrs:
        names = _config_names(config_layers, path) if config_layers is not None else None
        seen: set[int] = set()
        for key in _child(h5, "layers", path):
            yield from _keras3_layers(_child(h5["layers"], key, path), key, True, names, seen, path)
    else:
        root = _child(h5, "model_weights", path) if "model_weights" in h5 else h5
        if "layer_names" not in root.attrs:
            raise WeightsError(f"{path}: an HDF5 file without Keras layers (no 'layers' group or 'layer_names')")
        yield from _legacy_layers(root, path)


def _keras3_layers(entry, key: str, listed: bool, names: dict | None, seen: set[int], path):
    """Keras 3's layout: ``layers/<kind>[_<k>]/vars/<i>``, a nested model's layers under its own
    ``layers``, a custom layer's sublayers under their attribute names (kind "other": no place
    in our networks). Keras 3.6 and later record each layer's name on its ``vars``; older files
    only in the .keras archive's config (``names``: group path -> name). Each HDF5 object is
    visited once (``seen``: their addresses): hard links can make a group its own child, or a
    small graph of groups into more paths than can be walked."""
    import h5py

    if not isinstance(entry, h5py.Group):
        return
    address = h5py.h5o.get_info(entry.id).addr
    if address in seen:
        return
    seen.add(address)
    if "vars" in entry and len(_child(entry, "vars", path)):
        variables = entry["vars"]
        name = variables.attrs.get("name")
        if name is None and names is not None:
            name = names.get(entry.name)
        if name is None:
            raise WeightsError(
                f"{path}: written by a Keras before 3.6, which records no layer names in "
                f".weights.h5 files; save the model as .keras (or with a newer Keras)"
            )
        kind = re.sub(r"_\d+$", "", key) if listed else "other"
        ordered = [_dataset(variables, str(i), path) for i in range(len(variables))]
        yield KerasLayer(_text(name), kind, dict(zip(_variable_names(kind, len(ordered)), ordered)))
    for child in entry:
        if child == "layers":
            for inner in _child(entry, "layers", path):
                yield from _keras3_layers(_child(entry["layers"], inner, path), inner, True, names, seen, path)
        elif child != "vars":
            yield from _keras3_layers(_child(entry, child, path), child, False, names, seen, path)


def _variable_names(kind: str, count: int) -> tuple[str, ...]:
    if kind == "batch_normalization":
        return _BATCH_NORM_VARS.get(count, tuple(str(i) for i in range(count)))
    return _VARS.get(kind, tuple(str(i) for i in range(count)))[:count]


def _config_layers(config, path) -> list | None:
    """Every layer of a Keras model config, nested models flattened, as (class name, config, the
    HDF5 group Keras 3 keeps its variables in): Keras 3 numbers the layers of each class in
    ``model.layers`` order, which the config lists."""
    if config is None:
        return None
    found = []

    def walk(model_config, prefix):
        layers = model_config.get("config", {}).get("layers", [])
        if not isinstance(layers, list):
            raise TypeError("'layers' is not a list")
        counts = {}
        for layer in layers:
            kind = _snake_case(layer["class_name"])
            index = counts.get(kind, 0)
            counts[kind] = index + 1
            group = f"{prefix}/{kind}" + (f"_{index}" if index else "")
            found.append((layer["class_name"], layer.get("config", {}), group))
            if layer["class_name"] in _CONTAINERS:
                walk(layer, f"{group}/layers")

    try:
        walk(config, "/layers")
    except (TypeError, KeyError, AttributeError, RecursionError) as e:
        raise _bad_config(path, e) from None
    return found


def _config_names(config_layers, path) -> dict:
    """HDF5 group of each layer -> its name (for Keras 3 files that record no names)."""
    try:
        return {group: config["name"] for _, config, group in config_layers}
    except (TypeError, KeyError) as e:
        raise _bad_config(path, e) from None


def _bad_config(path, e) -> WeightsError:
    return WeightsError(f"{path}: the model config is not a Keras model's ({first_line(e)})")


def _snake_case(name: str) -> str:
    """Keras's own rule for a class name's file key (``BatchNormalization`` -> ``batch_normalization``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _legacy_layers(root, path):
    """Keras 2 / legacy HDF5: a group per layer name listing its variables in ``weight_names``
    (``conv2d/kernel:0``; Keras 3.0-3.2 wrote a bare ``kernel``). A nested model's group holds
    the weights of all its layers, owned by the name before the variable's; a plain layer's
    group is the layer (TensorFlow 1 graphs may have suffixed the scope: ``block1_conv1_1/kernel:0``)."""
    for layer_name in list(root.attrs["layer_names"]):
        group = _child(root, _text(layer_name), path)
        by_owner: dict[str, dict] = {}
        for weight_name in list(group.attrs.get("weight_names", [])):
            weight_name = _text(weight_name)
            parts = weight_name.split("/")
            owner = parts[-2] if len(parts) > 1 else _text(layer_name)
            by_owner.setdefault(owner, {})[parts[-1].split(":")[0]] = _dataset(group, weight_name, path)
        if len(by_owner) == 1:
            by_owner = {_text(layer_name): next(iter(by_owner.values()))}
        for name, variables in by_owner.items():
            yield KerasLayer(name, _legacy_kind(variables), variables)


def _legacy_kind(variables: dict) -> str:
    if "depthwise_kernel" in variables:
        return "separable_conv2d" if "pointwise_kernel" in variables else "depthwise_conv2d"
    if "moving_mean" in variables:
        return "batch_normalization"
    if "kernel" in variables:
        return {4: "conv2d", 2: "dense"}.get(len(variables["kernel"].shape), "other")
    return "other"


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


# --- our modules, in the order keras.applications creates the layers they take -----------------


def _v3_slots(model):
    for path, module in model.named_modules():
        if isinstance(module, BasicConv2d):
            yield Slot(f"{path}.conv", "conv2d")
            yield Slot(f"{path}.bn", "batch_normalization")


def _inception_resnet_v2_slots(model):
    """Automatic names except the residual up-projections (``block35_1_conv``... with a bias, no
    batch norm) and ``conv_7b``."""

    stages = {"repeat": "block35", "repeat_1": "block17", "repeat_2": "block8"}
    for path, module in model.named_modules():
        if isinstance(module, BasicConv2d):
            name = "conv_7b" if path == "conv2d_7b" else None
            yield Slot(f"{path}.conv", "conv2d", name)
            yield Slot(f"{path}.bn", "batch_normalization", name and f"{name}_bn")
        elif isinstance(module, Residual):
            stage, _, index = path.partition(".")
            name = "block8_10" if path == "block8" else f"{stages[stage]}_{int(index) + 1}"
            yield Slot(f"{path}.conv2d", "conv2d", f"{name}_conv")


def _xception_slots(model):
    """Named layers except the four 1x1 shortcut convolutions and their batch norms. Keras counts
    the entry convolutions as block 1, so our ``block<i>`` is Keras's ``block<i+1>`` and our exit
    convolutions ``conv3`` / ``conv4`` are ``block14_sepconv1`` / ``block14_sepconv2``."""

    for ours, keras in (("conv1", "block1_conv1"), ("conv2", "block1_conv2")):
        yield Slot(ours, "conv2d", keras)
        yield Slot(f"bn{ours[-1]}", "batch_normalization", f"{keras}_bn")
    for i in range(1, 13):
        block = getattr(model, f"block{i}")
        if block.skip is not None:
            yield Slot(f"block{i}.skip", "conv2d")
            yield Slot(f"block{i}.skipbn", "batch_normalization")
        separable = [j for j, layer in enumerate(block.rep) if isinstance(layer, SeparableConv2d)]
        for n, j in enumerate(separable, 1):
            keras = f"block{i + 1}_sepconv{n}"
            yield Slot(f"block{i}.rep.{j}", "separable_conv2d", keras)
            yield Slot(f"block{i}.rep.{j + 1}", "batch_normalization", f"{keras}_bn")
    for ours, n in (("3", 1), ("4", 2)):
        yield Slot(f"conv{ours}", "separable_conv2d", f"block14_sepconv{n}")
        yield Slot(f"bn{ours}", "batch_normalization", f"block14_sepconv{n}_bn")


_SLOTS = {"v3": _v3_slots, "inception-resnet-v2": _inception_resnet_v2_slots, "xception": _xception_slots}


def keras_state_dict(model, spec, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The Keras file at ``path`` as a state_dict of ``model`` (built by ``spec`` with
    ``BUILD_OPTIONS``): each layer found by name, its tensors transposed from Keras's layouts.
    Raises a one-line WeightsError for another architecture, a top other than global average
    pooling and one Dense, or a model built without Keras's numerics (or with aux heads)."""
    path = Path(path)
    if spec.name not in _SLOTS:
        raise WeightsError(
            f"{path}: Keras checkpoints load into {', '.join(_SLOTS)} "
            f"(keras.applications {', '.join(KERAS_NAMES.values())}), not arch {spec.name}"
        )
    if getattr(model, "build_options", None) != BUILD_OPTIONS[spec.name]:
        raise WeightsError(
            f"{path}: a Keras checkpoint needs {spec.name} built with Keras's numerics "
            f"{BUILD_OPTIONS[spec.name]}; create_model({spec.name!r}, weights=...) builds it so"
        )
    if any(getattr(model, name, None) is not None for name in spec.aux_modules):
        raise WeightsError(
            f"{path}: Keras's {KERAS_NAMES[spec.name]} has no auxiliary head: build {spec.name} without aux_logits"
        )
    expected = model.state_dict()
    with open_keras(path, weights_budget(expected)) as keras_file:
        dense = _classifier_layer(keras_file.layers, spec, path)
        _check_config(keras_file.config_layers, model, spec, path)
        pairs = _match(list(_SLOTS[spec.name](model)), keras_file.layers, spec, path)
        state = {}
        for slot, layer in pairs:
            state.update(_convert(slot, layer, expected, path))
        state.update(_classifier(dense, model.get_submodule(spec.classifier).in_features, spec, path))
    return state


def _check_config(config_layers, model, spec, path) -> None:
    """Where the file has the model's config (.keras, legacy .h5), refuse weightless layers that
    would compute what our network does not: another pooling before the classifier, a
    Rescaling, an added activation. A .weights.h5 has no config: its top is taken to be
    global average pooling and the one Dense, as keras.applications and fine-tuning build it."""
    if config_layers is None:
        return

    def name(config):
        return config.get("name", "?") if isinstance(config, dict) else "?"

    for cls, config, _ in config_layers:
        if cls not in _KNOWN_CLASSES:
            raise WeightsError(
                f"{path}: layer {name(config)} ({cls}) has no counterpart in {spec.name}; a "
                f"fine-tuned top must be global average pooling and one Dense"
            )
        allowed = _OUTPUT_ACTIVATIONS + (("relu",) if cls == "Activation" else ())
        activation = _activation(config) if cls in ("Activation", "Dense") else None
        if activation is not None and activation not in allowed:
            raise WeightsError(
                f"{path}: layer {name(config)} ({cls}) applies {activation}; {spec.name} returns the "
                f"logits of its classifier (the runtime prints their softmax)"
            )
    pools = sum(cls == "GlobalAveragePooling2D" for cls, _, _ in config_layers)
    if pools != 1:
        raise WeightsError(
            f"{path}: has {pools} GlobalAveragePooling2D layers; {spec.name} pools once, before its classifier"
        )
    relus = sum(cls == "Activation" and _activation(config) == "relu" for cls, config, _ in config_layers)
    ours = sum(isinstance(module, torch.nn.ReLU) for module in model.modules())
    if relus != ours:
        raise WeightsError(
            f"{path}: has {relus} ReLU activation layers where Keras's {KERAS_NAMES[spec.name]} has "
            f"{ours}: layers were added to the network"
        )


def _activation(config) -> str:
    """An activation as the config names it (a string, or a serialized function)."""
    value = config.get("activation", "linear") if isinstance(config, dict) else "linear"
    if isinstance(value, dict):
        value = value.get("config", value.get("class_name", "?"))
    return str(value)


def _match(slots, layers, spec, path):
    """Pair every slot with its layer: named slots by name, the others with the file's
    automatically named layers of their kind in creation order. Every weighted layer of the
    file must be used, except the classifier (``_classifier``)."""
    by_name = {layer.name: layer for layer in layers}
    if len(by_name) != len(layers):
        twice = sorted({layer.name for layer in layers if sum(other.name == layer.name for other in layers) > 1})
        raise WeightsError(f"{path}: more than one layer named {', '.join(twice[:3])}; layer names must be unique")
    pairs, used = [], set()
    for slot in (s for s in slots if s.name is not None):
        layer = by_name.get(slot.name)
        if layer is None or layer.kind != slot.kind:
            raise WeightsError(
                f"{path}: no {slot.kind} layer named {slot.name} (for {slot.module}); is this a "
                f"Keras {KERAS_NAMES[spec.name]}?"
            )
        pairs.append((slot, layer))
        used.add(layer.name)
    for kind in dict.fromkeys(s.kind for s in slots if s.name is None):
        wanted = [s for s in slots if s.name is None and s.kind == kind]
        automatic = sorted(
            (layer for layer in layers if _automatic_index(layer.name, kind) is not None and layer.name not in used),
            key=lambda layer: _automatic_index(layer.name, kind),
        )
        if len(automatic) != len(wanted):
            raise WeightsError(
                f"{path}: has {len(automatic)} {kind} layers with automatic names where Keras's "
                f"{KERAS_NAMES[spec.name]} has {len(wanted)}: another architecture, or layers added "
                f"to it"
            )
        pairs += zip(wanted, automatic)
        used.update(layer.name for layer in automatic)
    extra = [layer for layer in layers if layer.name not in used and layer.kind != "dense"]
    if extra:
        listed = ", ".join(layer.describe() for layer in extra[:3]) + (
            f" (+{len(extra) - 3} more)" if len(extra) > 3 else ""
        )
        raise WeightsError(f"{path}: layers that {spec.name} has no place for: {listed}")
    return pairs


def _automatic_index(name: str, kind: str) -> int | None:
    """0 for ``conv2d``, 5 for ``conv2d_5``; None for a name Keras did not make up for ``kind``."""
    match = re.fullmatch(rf"{kind}(?:_(\d+))?", name)
    return int(match.group(1) or 0) if match else None


def _classifier_layer(layers, spec, path) -> KerasLayer:
    """The file's one Dense layer: our networks end in one Linear after global average pooling."""
    dense = [layer for layer in layers if layer.kind == "dense"]
    if not dense:
        raise WeightsError(
            f"{path}: no Dense classifier (saved with include_top=False?); {spec.name} needs its "
            f"{spec.classifier} layer"
        )
    if len(dense) > 1:
        raise WeightsError(
            f"{path}: a custom top of {len(dense)} Dense layers "
            f"({', '.join(layer.describe() for layer in dense[:3])}) cannot be mapped onto "
            f"{spec.name}'s single {spec.classifier} layer (global average pool, then one Linear)"
        )
    return dense[0]


def _classifier(layer: KerasLayer, in_features: int, spec, path) -> dict[str, torch.Tensor]:
    kernel = tuple(layer.variables["kernel"].shape)
    classes = kernel[-1] if len(kernel) == 2 else 0
    bias = tuple(layer.variables["bias"].shape) if "bias" in layer.variables else (classes,)
    if len(kernel) != 2 or kernel[0] != in_features or not 1 <= classes <= MAX_CLASSES or bias != (classes,):
        raise WeightsError(
            f"{path}: Dense layer {layer.describe()} is not a classifier on {spec.name}'s "
            f"{in_features} pooled features (at most {MAX_CLASSES} classes)"
        )
    state = {f"{spec.classifier}.weight": _tensor(layer, "kernel", path).T.contiguous()}
    if "bias" in layer.variables:
        state[f"{spec.classifier}.bias"] = _tensor(layer, "bias", path)
    return state


def _convert(slot: Slot, layer: KerasLayer, expected, path) -> dict[str, torch.Tensor]:
    """One Keras layer as our tensors: Conv2D kernels are (kh, kw, in, out), depthwise kernels
    (kh, kw, channels, 1); BatchNormalization without ``scale`` has no gamma (1 then)."""
    m = slot.module
    if slot.kind == "conv2d":
        out = {f"{m}.weight": (layer, "kernel", (3, 2, 0, 1))}
        if "bias" in layer.variables:
            out[f"{m}.bias"] = (layer, "bias", None)
    elif slot.kind == "separable_conv2d":
        out = {
            f"{m}.conv1.weight": (layer, "depthwise_kernel", (2, 3, 0, 1)),
            f"{m}.pointwise.weight": (layer, "pointwise_kernel", (3, 2, 0, 1)),
        }
        if "bias" in layer.variables:
            out[f"{m}.pointwise.bias"] = (layer, "bias", None)
    else:
        out = {f"{m}.running_mean": (layer, "moving_mean", None), f"{m}.running_var": (layer, "moving_variance", None)}
        for ours, keras in (("weight", "gamma"), ("bias", "beta")):
            if keras in layer.variables:
                out[f"{m}.{ours}"] = (layer, keras, None)
    state = {}
    for key, (source, variable, order) in out.items():
        if variable not in source.variables:
            raise WeightsError(f"{path}: layer {layer.describe()} has no {variable}")
        shape = tuple(source.variables[variable].shape)
        if order and len(shape) != len(order):
            raise WeightsError(f"{path}: layer {layer.describe()}: {variable} is not a 4-dimensional kernel")
        shape = tuple(shape[i] for i in order) if order else shape
        if key not in expected or tuple(expected[key].shape) != shape:
            want = "x".join(map(str, expected[key].shape)) if key in expected else "nothing"
            raise WeightsError(
                f"{path}: layer {layer.describe()} does not fit {m} ({key.rsplit('.', 1)[-1]} {want} after transposing)"
            )
        tensor = _tensor(source, variable, path)
        state[key] = tensor.permute(order).contiguous() if order else tensor
    if slot.kind == "batch_normalization":
        state.setdefault(f"{m}.weight", torch.ones_like(state[f"{m}.running_mean"]))
        state.setdefault(f"{m}.bias", torch.zeros_like(state[f"{m}.running_mean"]))
        state[f"{m}.num_batches_tracked"] = torch.tensor(0)  # PyTorch's training counter; Keras has none
    return state


def _tensor(layer: KerasLayer, variable: str, path) -> torch.Tensor:
    dataset = layer.variables[variable]
    if dataset.dtype.kind != "f":
        raise WeightsError(f"{path}: {layer.name}/{variable} holds {dataset.dtype}, not floating-point weights")
    return torch.from_numpy(dataset[()].astype("float32"))
