"""The evaluation transforms of the reference checkpoints, built from their own libraries
(torchvision, timm, Cadene's pretrainedmodels), and the stored numbers they produce.

Run once where those libraries are installed (scripts/reference_env.sh) to (re)write the
expected values that tests/test_preprocess.py pins on every machine:

    INCEPTION_DEPLOY_REFERENCES=/tmp/inception-refs python tests/reference_transforms.py

The expected file holds, for each architecture and shipped photo, the sha256 of the uint8
pixels after the reference's resize + center crop, and every 13th pixel of its final float
tensor: an independent computation, not our code's output.
"""

import hashlib
import os
import sys
from pathlib import Path

import numpy as np

EXPECTED = Path(__file__).parent / "data" / "preprocess_reference.npz"
ARCHS = (
    "v1",
    "v2",
    "v3",
    "v4",
    "resnet-v2",
    "xception",
    "resnet50",
    "densenet121",
    "seresnet50",
    "res2net50_26w_4s",
    "resnest50d",
    "inception_next_tiny",
    "inception_next_base",
    "skresnet18",
)
STRIDE = 13
_TIMM_NAMES = {
    "v4": "inception_v4",
    "resnet-v2": "inception_resnet_v2",
    "xception": "legacy_xception",
    "seresnet50": "seresnet50",
    "res2net50_26w_4s": "res2net50_26w_4s",
    "resnest50d": "resnest50d",
    "inception_next_tiny": "inception_next_tiny",
    "inception_next_base": "inception_next_base",
    "skresnet18": "skresnet18",
}
# torchvision's ImageNet classifiers, IMAGENET1K_V1 weights: their own transforms preset
_TORCHVISION_WEIGHTS = {"resnet50": "ResNet50_Weights", "densenet121": "DenseNet121_Weights"}


def reference_transform(arch):
    """(resize + crop transform on PIL, full transform to a float CHW tensor) of ``arch``'s
    reference; raises ImportError where the library is missing."""
    if arch in ("v1", "v3"):
        import torch
        from torchvision import transforms as T

        resize, crop = (256, 224) if arch == "v1" else (342, 299)
        imagenet = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        # torchvision's ImageClassification preset; the model's transform_input then remaps
        # ImageNet normalization to (x - 0.5) / 0.5, applied here explicitly
        full = T.Compose([T.Resize(resize), T.CenterCrop(crop), T.ToTensor(), T.Normalize(*imagenet)])
        mean, std = (torch.tensor(v)[:, None, None] for v in imagenet)
        return T.Compose(full.transforms[:2]), lambda image: ((full(image) * std + mean) - 0.5) / 0.5
    if arch in _TORCHVISION_WEIGHTS:
        import torchvision.models
        from torchvision import transforms as T

        preset = getattr(torchvision.models, _TORCHVISION_WEIGHTS[arch]).IMAGENET1K_V1.transforms()
        size = preset.crop_size[0]
        crop = T.Compose([T.Resize(preset.resize_size, interpolation=preset.interpolation), T.CenterCrop(size)])
        return crop, preset
    if arch == "v2":
        from pretrainedmodels.models.bninception import pretrained_settings
        from pretrainedmodels.utils import TransformImage
        from torchvision import transforms as T

        full = TransformImage(pretrained_settings["bninception"]["imagenet"])
        return T.Compose(full.tf.transforms[:2]), full
    import timm
    from timm.data import create_transform, resolve_data_config
    from torchvision import transforms as T

    full = create_transform(**resolve_data_config({}, model=timm.create_model(_TIMM_NAMES[arch])))
    return T.Compose(full.transforms[:2]), full


def crop_digest(image) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(image, np.uint8)).tobytes()).hexdigest()


def main():
    from PIL import Image

    sys.path.insert(0, os.environ.get("INCEPTION_DEPLOY_REFERENCES", ""))
    from inception_deploy.inputs import sample_photos

    arrays = {}
    for arch in ARCHS:
        crop, full = reference_transform(arch)
        for photo in sample_photos():
            image = Image.open(photo).convert("RGB")
            key = f"{arch}/{photo.name}"
            arrays[f"{key}/crop_sha256"] = np.array(crop_digest(crop(image)))
            arrays[f"{key}/strided"] = full(image).numpy()[:, ::STRIDE, ::STRIDE].astype(np.float32)
    EXPECTED.parent.mkdir(exist_ok=True)
    np.savez_compressed(EXPECTED, **arrays)
    print(f"wrote {EXPECTED} ({len(arrays)} arrays)")


if __name__ == "__main__":
    main()
