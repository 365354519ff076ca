"""One ArchSpec per architecture: how to build it, whose checkpoints it loads, and how those
checkpoints expect their pixels (timm's registry idea, in one table)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import import_module

from ..errors import InceptionDeployError, UnknownArchError, first_line
from ..metadata import MAX_INPUT_SIZE
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, PreprocessConfig


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
    factory: str  # "module:callable" (a class, or a function taking num_classes), imported on first build
    preprocess: PreprocessConfig
    reference: str  # whose state_dict layout this follows
    file_stem: str  # default artifact name, e.g. inception_v3.onnx
    classifier: str  # module name of the final Linear layer
    family: str  # for listings and help: "Inception", "ResNet", ...
    aux_modules: tuple[str, ...] = ()
    pretrained: PretrainedWeights | None = None
    min_input_size: int = 75  # smallest square input the network runs at (tests check it on the network)
    legacy_keys: tuple[tuple[str, str], ...] = ()  # (regex, replacement): old checkpoint key names

    def build(self, num_classes: int = 1000, aux_logits: bool = False, **options):
        """The bare torch module (random init, BN statistics 0/1); see ``create_model``.

        ``options`` go to the network's constructor (Keras's numerics: ``keras_checkpoints``).
        The module carries its arch name (``model.arch``): one class serves several archs (the
        ResNet trunk), so a module's class alone does not say which spec made it; and the
        options it was built with (``model.build_options``), which a checkpoint loader checks.
        """
        if aux_logits and not self.aux_modules:
            raise InceptionDeployError(f"arch {self.name} has no auxiliary heads: drop aux_logits")
        kwargs = {"aux_logits": aux_logits} if self.aux_modules else {}
        model = self.resolve_factory()(num_classes=num_classes, **kwargs, **options)
        model.arch = self.name
        model.build_options = dict(options)
        return model

    def module_paths(self, kind=None) -> list[str]:
        """The paths of the network's modules (of class ``kind`` only, e.g. torch.nn.Conv2d), in
        definition order: what ``--int8-keep-float`` names."""
        return [
            name
            for name, module in self.meta_model().named_modules()
            if name and (kind is None or isinstance(module, kind))
        ]

    def meta_model(self):
        """The network built on torch's meta device: its modules, without memory or init."""
        import torch

        with torch.device("meta"):
            return self.build()

    def resolve_factory(self):
        module, name = self.factory.split(":")
        return getattr(import_module(f"inception_deploy.models.{module}"), name)


def _eval_transform(
    input_size: int, crop_pct: float, interpolation: str, mean=IMAGENET_MEAN, std=IMAGENET_STD
) -> PreprocessConfig:
    """The eval transform of torchvision and timm: resize the shorter side to
    floor(input_size / crop_pct), center-crop input_size, normalize per channel."""
    return PreprocessConfig(input_size, math.floor(input_size / crop_pct), interpolation, mean, std)


def _torchvision_inception(input_size: int, resize_size: int) -> PreprocessConfig:
    """torchvision's eval transform for googlenet / inception_v3 with ``transform_input=True``:
    ImageNet normalization remapped inside the model to (x - 0.5) / 0.5 on [0, 1] pixels."""
    return PreprocessConfig(input_size, resize_size, "bilinear", INCEPTION_MEAN, INCEPTION_STD)


def _timm_inception(crop_pct: float) -> PreprocessConfig:
    """timm's eval transform of its Inception ports: 299, bicubic, mean = std = 0.5."""
    return _eval_transform(299, crop_pct, "bicubic", INCEPTION_MEAN, INCEPTION_STD)


_TORCHVISION = "https://download.pytorch.org/models/"
_TIMM = "https://github.com/rwightman/pytorch-image-models/releases/download/"
# torchvision's IMAGENET1K_V1 weights (the V2 ones were measured at resize 232): resize 256, crop 224
_TORCHVISION_IMAGENET = _eval_transform(224, 0.875, "bilinear")


def _torchvision_resnet(name: str, factory: str, digest: str, family: str = "ResNet") -> ArchSpec:
    return ArchSpec(
        name,
        (),
        factory,
        _TORCHVISION_IMAGENET,
        f"torchvision {name}",
        name,
        "fc",
        family,
        pretrained=PretrainedWeights(f"{_TORCHVISION}{name}-{digest}.pth"),
        min_input_size=1,
    )


def _inception_next(name: str, crop_pct: float) -> ArchSpec:
    """timm's inception_next_* (sail-sg's release files, same keys): 224, bicubic, ImageNet mean/std."""
    return ArchSpec(
        name,
        (name.replace("_", "-"),),
        f"inception_next:{name}",
        _eval_transform(224, crop_pct, "bicubic"),
        f"timm {name}",
        name,
        "head.fc2",
        "InceptionNeXt",
        min_input_size=32,
        # sail-sg publishes no digest for these files
        pretrained=PretrainedWeights(
            f"https://github.com/sail-sg/inceptionnext/releases/download/model/{name.replace('_next', 'next')}.pth"
        ),
    )


def _timm_sknet(name: str, file: str, aliases: tuple[str, ...] = ()) -> ArchSpec:
    """timm's SK-ResNets (its "ra" weights): 224, crop 0.875, bicubic."""
    return ArchSpec(
        name,
        aliases,
        f"sknet:{name}",
        _eval_transform(224, 0.875, "bicubic"),
        f"timm {name}",
        name,
        "fc",
        "SK-Net",
        min_input_size=1,
        pretrained=PretrainedWeights(f"{_TIMM}v0.1-weights/{file}"),
    )


ARCHS: tuple[ArchSpec, ...] = (
    ArchSpec(
        "v1",
        ("googlenet", "inception-v1"),
        "googlenet:GoogLeNet",
        _torchvision_inception(224, 256),
        "torchvision googlenet",
        "googlenet",
        "fc",
        "Inception",
        aux_modules=("aux1", "aux2"),
        min_input_size=15,
        pretrained=PretrainedWeights(_TORCHVISION + "googlenet-1378be20.pth"),
    ),
    ArchSpec(
        "v2",
        ("bn-inception", "bninception", "inception-v2"),
        "bninception:BNInception",
        PreprocessConfig(
            224, 256, "bilinear", (104.0, 117.0, 128.0), (1.0, 1.0, 1.0), channel_order="BGR", pixel_scale=255.0
        ),
        "Cadene pretrainedmodels bninception",
        "bninception",
        "last_linear",
        "Inception",
        min_input_size=31,
        pretrained=PretrainedWeights("http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-239d2248.pth"),
    ),
    ArchSpec(
        "v3",
        ("inception-v3", "inception_v3"),
        "inception_v3:Inception3",
        _torchvision_inception(299, 342),
        "torchvision inception_v3",
        "inception_v3",
        "fc",
        "Inception",
        aux_modules=("AuxLogits",),
        pretrained=PretrainedWeights(_TORCHVISION + "inception_v3_google-0cc3c7bd.pth"),
    ),
    ArchSpec(
        "v4",
        ("inception-v4", "inception_v4"),
        "inception_v4:InceptionV4",
        _timm_inception(0.875),
        "timm inception_v4",
        "inception_v4",
        "last_linear",
        "Inception",
        pretrained=PretrainedWeights(_TIMM + "v0.1-cadene/inceptionv4-8e4777a0.pth", label_offset=1),
    ),
    ArchSpec(
        "inception-resnet-v1",
        ("resnet-v1", "inception_resnet_v1"),
        "inception_resnet:InceptionResnetV1",
        # facenet's fixed_image_standardization: (x - 127.5) / 128 on 0-255 pixels
        PreprocessConfig(299, 299, "bilinear", INCEPTION_MEAN, (128 / 255,) * 3),
        "facenet-pytorch InceptionResnetV1 (classify=True)",
        "inception_resnet_v1",
        "logits",
        "Inception",
        # VGGFace2 identities, not ImageNet classes; facenet publishes no digest for this file
        pretrained=PretrainedWeights(
            "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
            num_classes=8631,
        ),
    ),
    ArchSpec(
        "inception-resnet-v2",
        ("resnet-v2", "inception_resnet_v2"),
        "inception_resnet:InceptionResnetV2",
        _timm_inception(0.8975),
        "timm inception_resnet_v2",
        "inception_resnet_v2",
        "classif",
        "Inception",
        pretrained=PretrainedWeights(_TIMM + "v0.1-weights/inception_resnet_v2-940b1cd6.pth", label_offset=1),
    ),
    ArchSpec(
        "xception",
        ("legacy-xception", "legacy_xception"),
        "xception:Xception",
        _timm_inception(0.8975),
        "timm legacy_xception",
        "xception",
        "fc",
        "Inception",
        min_input_size=7,
        pretrained=PretrainedWeights(_TIMM + "v0.1-cadene/xception-43020ad28.pth"),
    ),
    _torchvision_resnet("resnet18", "resnet:resnet18", "f37072fd"),
    _torchvision_resnet("resnet34", "resnet:resnet34", "b627a593"),
    _torchvision_resnet("resnet50", "resnet:resnet50", "0676ba61"),
    _torchvision_resnet("resnet101", "resnet:resnet101", "63fe2227"),
    _torchvision_resnet("resnext50_32x4d", "resnet:resnext50_32x4d", "7cdf4587", family="ResNeXt"),
    ArchSpec(
        # timm's default seresnet50 weights (a1_in1k, "ResNet strikes back"): crop 0.95, bicubic
        "seresnet50",
        (),
        "resnet:seresnet50",
        _eval_transform(224, 0.95, "bicubic"),
        "timm seresnet50",
        "seresnet50",
        "fc",
        "SE-ResNet",
        min_input_size=1,
        pretrained=PretrainedWeights(
            "https://github.com/huggingface/pytorch-image-models/releases/download/"
            "v0.1-rsb-weights/seresnet50_a1_0-ffa00869.pth"
        ),
    ),
    ArchSpec(
        "densenet121",
        (),
        "densenet:densenet121",
        _TORCHVISION_IMAGENET,
        "torchvision densenet121",
        "densenet121",
        "classifier",
        "DenseNet",
        min_input_size=29,
        pretrained=PretrainedWeights(_TORCHVISION + "densenet121-a639ec97.pth"),
        legacy_keys=(
            (r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$", r"\1\2"),
        ),  # torchvision's files: "denselayer1.norm.1.weight" -> "denselayer1.norm1.weight"
    ),
    ArchSpec(
        "res2net50_26w_4s",
        ("res2net50",),
        "res2net:res2net50_26w_4s",
        _eval_transform(224, 0.875, "bilinear"),
        "timm res2net50_26w_4s",
        "res2net50_26w_4s",
        "fc",
        "Res2Net",
        min_input_size=1,
        pretrained=PretrainedWeights(_TIMM + "v0.1-res2net/res2net50_26w_4s-06e79181.pth"),
    ),
    ArchSpec(
        "resnest50d",
        ("resnest50",),
        "resnest:resnest50d",
        _eval_transform(224, 0.875, "bilinear"),
        "timm resnest50d",
        "resnest50d",
        "fc",
        "ResNeSt",
        min_input_size=1,
        pretrained=PretrainedWeights(_TIMM + "v0.1-resnest/resnest50-528c19ca.pth"),
    ),
    _inception_next("inception_next_atto", 0.875),
    _inception_next("inception_next_tiny", 0.875),
    _inception_next("inception_next_small", 0.875),
    _inception_next("inception_next_base", 0.95),
    _timm_sknet("skresnet18", "skresnet18_ra-4eec2804.pth"),
    _timm_sknet("skresnet34", "skresnet34_ra-bdc0ccde.pth"),
    _timm_sknet("skresnext50_32x4d", "skresnext50_ra-f40e40bf.pth", aliases=("sknet50",)),
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


def canonical_arch(name: str) -> str:
    """An arch name or alias as the registry's own name (artifacts record what was current when
    they were made: "resnet-v1" before ResNets joined is now "inception-resnet-v1"); an unknown
    name is returned as it is."""
    spec = _BY_NAME.get(name.strip().lower()) if isinstance(name, str) else None
    return spec.name if spec else name


def spec_for_model(model) -> ArchSpec | None:
    """The spec that built ``model`` (``ArchSpec.build`` names it), else the one spec whose class
    it is (the Inception classes; a ResNet made by calling a factory function directly is not
    named, so build it with ``create_model``); None for a model from elsewhere."""
    tagged = getattr(model, "arch", None)
    if isinstance(tagged, str) and tagged.lower() in _BY_NAME:
        return _BY_NAME[tagged.lower()]
    matches = [s for s in ARCHS if type(model) is s.resolve_factory()]
    return matches[0] if len(matches) == 1 else None


def check_input_size(spec: ArchSpec, size: int) -> None:
    """Raise a one-line error when ``spec``'s network cannot run at ``size`` x ``size``.

    Beyond the stated bounds, the network is traced on the meta device (shapes only, no memory,
    milliseconds), so the answer is the network's own, not a hand-kept table.
    """
    import torch

    if size < spec.min_input_size:
        raise InceptionDeployError(
            f"arch {spec.name} needs an input of at least {spec.min_input_size} pixels, not {size}"
        )
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
