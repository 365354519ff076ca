"""One ArchSpec per architecture: how to build it, whose checkpoints it loads, and how those
checkpoints expect their pixels (timm's registry idea, in one table)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import import_module

from ..errors import InceptionDeployError, UnknownArchError, first_line
from ..preprocess import INCEPTION_MEAN, INCEPTION_STD, PreprocessConfig


@dataclass(frozen=True)
class PretrainedWeights:
    """A published checkpoint of the reference layout.

    The hash check uses ``sha256`` when given, else the digest prefix that torch.hub-style file
    names carry (``name-<sha256 prefix>.pth``). ``label_offset=1`` marks TensorFlow ports whose
    head has a leading background class (1001 outputs); loading drops it for 1000 classes.
    """

    url: str
    num_classes: int = 1000
    sha256: str | None = None
    label_offset: int = 0


@dataclass(frozen=True)
class ArchSpec:
    name: str
    aliases: tuple[str, ...]
    model_class: str  # "module:Class", imported on first build so the registry needs no torch
    preprocess: PreprocessConfig
    reference: str  # whose state_dict layout this follows
    file_stem: str  # default artifact name, e.g. inception_v3.onnx
    classifier: str  # module name of the final Linear layer
    aux_modules: tuple[str, ...] = ()
    pretrained: PretrainedWeights | None = None
    min_input_size: int = 75  # smallest square input the network runs at (tests check it on the network)

    def build(self, num_classes: int = 1000, aux_logits: bool = False):
        """The bare torch module (random init, BN statistics 0/1); see ``create_model``."""
        if aux_logits and not self.aux_modules:
            raise InceptionDeployError(f"arch {self.name} has no auxiliary heads: drop aux_logits")
        kwargs = {"aux_logits": aux_logits} if self.aux_modules else {}
        return self.resolve_class()(num_classes=num_classes, **kwargs)

    def resolve_class(self) -> type:
        module, name = self.model_class.split(":")
        return getattr(import_module(f"inception_deploy.models.{module}"), name)

def _torchvision(input_size: int, resize_size: int) -> PreprocessConfig:
    """torchvision's eval transform for googlenet / inception_v3 with ``transform_input=True``:
    ImageNet normalization remapped inside the model to (x - 0.5) / 0.5 on [0, 1] pixels."""
    return PreprocessConfig(input_size, resize_size, "bilinear", INCEPTION_MEAN, INCEPTION_STD)


def _timm(crop_pct: float) -> PreprocessConfig:
    """timm's eval transform at 299: resize floor(299 / crop_pct) bicubic, center crop."""
    return PreprocessConfig(299, math.floor(299 / crop_pct), "bicubic", INCEPTION_MEAN, INCEPTION_STD)


_TORCHVISION = "https://download.pytorch.org/models/"
_TIMM = "https://github.com/rwightman/pytorch-image-models/releases/download/"

ARCHS: tuple[ArchSpec, ...] = (
    ArchSpec(
        "v1", ("googlenet", "inception-v1"), "googlenet:GoogLeNet", _torchvision(224, 256),
        "torchvision googlenet", "googlenet", "fc", aux_modules=("aux1", "aux2"), min_input_size=15,
        pretrained=PretrainedWeights(_TORCHVISION + "googlenet-1378be20.pth"),
    ),
    ArchSpec(
        "v2", ("bn-inception", "bninception", "inception-v2"), "bninception:BNInception",
        PreprocessConfig(224, 256, "bilinear", (104.0, 117.0, 128.0), (1.0, 1.0, 1.0),
                         channel_order="BGR", pixel_scale=255.0),
        "Cadene pretrainedmodels bninception", "bninception", "last_linear", min_input_size=31,
        pretrained=PretrainedWeights("http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-239d2248.pth"),
    ),
    ArchSpec(
        "v3", ("inception-v3", "inception_v3"), "inception_v3:Inception3", _torchvision(299, 342),
        "torchvision inception_v3", "inception_v3", "fc", aux_modules=("AuxLogits",),
        pretrained=PretrainedWeights(_TORCHVISION + "inception_v3_google-0cc3c7bd.pth"),
    ),
    ArchSpec(
        "v4", ("inception-v4", "inception_v4"), "inception_v4:InceptionV4", _timm(0.875),
        "timm inception_v4", "inception_v4", "last_linear",
        pretrained=PretrainedWeights(_TIMM + "v0.1-cadene/inceptionv4-8e4777a0.pth", label_offset=1),
    ),
    ArchSpec(
        "resnet-v1", ("inception-resnet-v1", "inception_resnet_v1"), "inception_resnet:InceptionResnetV1",
        # facenet's fixed_image_standardization: (x - 127.5) / 128 on 0-255 pixels
        PreprocessConfig(299, 299, "bilinear", INCEPTION_MEAN, (128 / 255,) * 3),
        "facenet-pytorch InceptionResnetV1 (classify=True)", "inception_resnet_v1", "logits",
        # VGGFace2 identities, not ImageNet classes; facenet publishes no digest for this file
        pretrained=PretrainedWeights(
            "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
            num_classes=8631),
    ),
    ArchSpec(
        "resnet-v2", ("inception-resnet-v2", "inception_resnet_v2"), "inception_resnet:InceptionResnetV2", _timm(0.8975),
        "timm inception_resnet_v2", "inception_resnet_v2", "classif",
        pretrained=PretrainedWeights(_TIMM + "v0.1-weights/inception_resnet_v2-940b1cd6.pth", label_offset=1),
    ),
    ArchSpec(
        "xception", ("legacy-xception", "legacy_xception"), "xception:Xception", _timm(0.8975),
        "timm legacy_xception", "xception", "fc", min_input_size=7,
        pretrained=PretrainedWeights(_TIMM + "v0.1-cadene/xception-43020ad28.pth"),
    ),
)

_BY_NAME = {name.lower(): spec for spec in ARCHS for name in (spec.name, *spec.aliases)}


def list_archs() -> list[str]:
    """Canonical architecture names, in the order of the table."""
    return [spec.name for spec in ARCHS]


def get_arch(name: str) -> ArchSpec:
    try:
        return _BY_NAME[name.strip().lower()]
    except (KeyError, AttributeError):
        choices = ", ".join(f"{s.name} ({', '.join(s.aliases)})" for s in ARCHS)
        raise UnknownArchError(f"unknown arch {name!r}; choose one of: {choices}") from None


def spec_for_model(model) -> ArchSpec | None:
    """The spec whose class built ``model``, or None for a model from elsewhere."""
    return next((s for s in ARCHS if type(model) is s.resolve_class()), None)

def check_input_size(spec: ArchSpec, size: int) -> None:
    """Raise a one-line error when ``spec``'s network cannot run at ``size`` x ``size``.

    Beyond the stated bounds, the network is traced on the meta device (shapes only, no memory,
    milliseconds), so the answer is the network's own, not a hand-kept table.
    """
    import torch

    from ..metadata import MAX_INPUT_SIZE

    if size < spec.min_input_size:
        raise InceptionDeployError(f"arch {spec.name} needs an input of at least {spec.min_input_size} pixels, "
                                   f"not {size}")
    if size > MAX_INPUT_SIZE:
        raise InceptionDeployError(f"input size {size} is above the limit of {MAX_INPUT_SIZE} pixels")
    with torch.device("meta"):
        model = spec.build()
        probe = torch.empty(1, 3, size, size)
    try:
        model.eval()(probe)
    except RuntimeError as e:
        raise InceptionDeployError(
            f"input size {size} is not supported by arch {spec.name} (default {spec.preprocess.input_size}): "
            f"{first_line(e)}"
        ) from None
