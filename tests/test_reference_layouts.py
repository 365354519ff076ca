"""Our networks against the reference implementations themselves, where those are installed.

The reference libraries (torchvision, timm, Cadene's pretrainedmodels, facenet-pytorch) are not
dependencies; CI installs them aside (scripts/reference_env.sh, pointed to by
INCEPTION_DEPLOY_REFERENCES) and elsewhere each case skips with a reason. Where they import, this is
the strongest check we have: the reference's own state_dict loads strictly into our module and both
give the same logits.
"""

import pytest
import torch
from reference_transforms import ARCHS as REFERENCE_TRANSFORM_ARCHS

from inception_deploy.checkpoints.zoo import synthetic_batch
from inception_deploy.models import calibrate_batchnorm, get_arch


def _torchvision(name, **kw):
    models = pytest.importorskip("torchvision.models", reason="torchvision not installed")
    return getattr(models, name)(weights=None, init_weights=True, transform_input=False, **kw)


def _torchvision_plain(name):
    models = pytest.importorskip("torchvision.models", reason="torchvision not installed")
    return getattr(models, name)(weights=None)


def _timm(name):
    timm = pytest.importorskip("timm", reason="timm not installed")
    return timm.create_model(name, pretrained=False)


def _attr(module, name, **kw):
    mod = pytest.importorskip(module, reason=f"{module.split('.')[0]} not installed")
    return getattr(mod, name)(**kw)


REFERENCES = {
    ("v1", False): lambda: _torchvision("googlenet", aux_logits=False),
    ("v1", True): lambda: _torchvision("googlenet", aux_logits=True),
    ("v2", False): lambda: _attr("pretrainedmodels.models.bninception", "BNInception", num_classes=1000),
    ("v3", False): lambda: _torchvision("inception_v3", aux_logits=False),
    ("v3", True): lambda: _torchvision("inception_v3", aux_logits=True),
    ("v4", False): lambda: _timm("inception_v4"),
    ("resnet-v1", False): lambda: _attr(
        "facenet_pytorch.models.inception_resnet_v1", "InceptionResnetV1", classify=True, num_classes=1000
    ),
    ("resnet-v2", False): lambda: _timm("inception_resnet_v2"),
    ("xception", False): lambda: _timm("legacy_xception"),
    ("resnet18", False): lambda: _torchvision_plain("resnet18"),
    ("resnet34", False): lambda: _torchvision_plain("resnet34"),
    ("resnet50", False): lambda: _torchvision_plain("resnet50"),
    ("resnet101", False): lambda: _torchvision_plain("resnet101"),
    ("resnext50_32x4d", False): lambda: _torchvision_plain("resnext50_32x4d"),
    ("densenet121", False): lambda: _torchvision_plain("densenet121"),
    ("seresnet50", False): lambda: _timm("seresnet50"),
    ("res2net50_26w_4s", False): lambda: _timm("res2net50_26w_4s"),
    ("resnest50d", False): lambda: _timm("resnest50d"),
    ("inception_next_atto", False): lambda: _timm("inception_next_atto"),
    ("inception_next_tiny", False): lambda: _timm("inception_next_tiny"),
    ("inception_next_small", False): lambda: _timm("inception_next_small"),
    ("inception_next_base", False): lambda: _timm("inception_next_base"),
    ("skresnet18", False): lambda: _timm("skresnet18"),
    ("skresnet34", False): lambda: _timm("skresnet34"),
    ("skresnext50_32x4d", False): lambda: _timm("skresnext50_32x4d"),
}


@pytest.mark.parametrize("arch,aux", sorted(REFERENCES), ids=lambda v: str(v))
def test_reference_state_dict_loads_and_logits_match(arch, aux):
    reference = REFERENCES[(arch, aux)]()
    spec = get_arch(arch)
    ours = spec.build(1000, aux_logits=aux)
    ref_sd, our_sd = reference.state_dict(), ours.state_dict()
    assert set(ref_sd) == set(our_sd)
    assert {k: tuple(v.shape) for k, v in ref_sd.items()} == {k: tuple(v.shape) for k, v in our_sd.items()}

    # give the reference realistic BN statistics, then copy everything into ours
    x = synthetic_batch(spec, count=4, seed=3)
    reference.eval()
    with torch.no_grad():  # InceptionNeXt's layer scales start at 1e-6, which would hide its blocks
        for name, p in reference.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.5, 1.5)
    calibrate_batchnorm(reference, [x])
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours.eval()
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    scale = expected.abs().max()
    assert torch.isfinite(expected).all()
    assert (got - expected).abs().max() <= 1e-5 * scale
    assert torch.equal(got.argmax(1), expected.argmax(1))


@pytest.mark.parametrize("arch", REFERENCE_TRANSFORM_ARCHS)
def test_preprocessing_equals_reference_eval_transform(arch):
    """Live version of tests/test_preprocess.py's stored numbers, on the references themselves."""
    from PIL import Image
    from reference_transforms import reference_transform

    from inception_deploy.inputs import sample_photos
    from inception_deploy.preprocess import preprocess

    try:
        _, full = reference_transform(arch)
    except ImportError as e:
        pytest.skip(f"reference library not installed ({e.name})")
    photos = sample_photos()
    expected = torch.stack([full(Image.open(p).convert("RGB")) for p in photos]).numpy()
    got = preprocess(photos, get_arch(arch).preprocess)
    tolerance = 1e-3 if arch == "v2" else 1e-5  # v2 works in 0-255 units
    assert abs(got - expected).max() <= tolerance
