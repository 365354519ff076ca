import pytest
import torch
from archs import EXPORTED

from inception_deploy import InceptionDeployError, calibrate_batchnorm, create_model, list_archs
from inception_deploy.checkpoints.zoo import synthetic_batch
from inception_deploy.errors import UnknownArchError
from inception_deploy.models import check_input_size, get_arch
from inception_deploy.models.registry import ARCHS as SPECS

INCEPTIONS = ["v1", "v2", "v3", "v4", "inception-resnet-v1", "inception-resnet-v2", "xception"]
BACKBONES = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnext50_32x4d",
    "seresnet50",
    "densenet121",
    "res2net50_26w_4s",
    "resnest50d",
    "inception_next_atto",
    "inception_next_tiny",
    "inception_next_small",
    "inception_next_base",
    "skresnet18",
    "skresnet34",
    "skresnext50_32x4d",
]
ARCHS = INCEPTIONS + BACKBONES

# parameters / state_dict entries of each reference layout, 1000 classes (README's architecture table)
REFERENCE_SIZES = {
    ("v1", True): (13_004_888, 364),
    ("v1", False): (6_624_904, 344),
    ("v2", False): (11_295_240, 485),
    ("v3", True): (27_161_264, 580),
    ("v3", False): (23_834_568, 566),
    ("v4", False): (42_679_816, 896),
    ("resnet-v1", False): (23_995_624, 716),
    ("resnet-v2", False): (55_843_464, 1306),
    ("xception", False): (22_855_952, 276),
    ("resnet18", False): (11_689_512, 122),
    ("resnet34", False): (21_797_672, 218),
    ("resnet50", False): (25_557_032, 320),
    ("resnet101", False): (44_549_160, 626),
    ("resnext50_32x4d", False): (25_028_904, 320),
    ("seresnet50", False): (28_088_024, 384),
    ("densenet121", False): (7_978_856, 727),
    ("res2net50_26w_4s", False): (25_699_120, 512),
    ("resnest50d", False): (27_483_240, 476),
    ("inception_next_atto", False): (4_156_520, 226),
    ("inception_next_tiny", False): (28_055_680, 322),
    ("inception_next_small", False): (49_374_016, 610),
    ("inception_next_base", False): (86_672_136, 610),
    ("skresnet18", False): (11_958_056, 226),
    ("skresnet34", False): (22_282_376, 426),
    ("skresnext50_32x4d", False): (27_479_784, 528),
}


def test_registry_names_and_aliases():
    assert list_archs() == ARCHS
    assert get_arch("googlenet").name == "v1"
    assert get_arch("BN-Inception").name == "v2"
    assert get_arch("resnet-v2").name == "inception-resnet-v2"  # its name before ResNets joined
    assert get_arch("ResNeSt50").name == "resnest50d" and get_arch("res2net50").name == "res2net50_26w_4s"
    with pytest.raises(UnknownArchError, match=r"unknown arch 'v5'; choose one of: v1 \(googlenet"):
        get_arch("v5")


@pytest.mark.parametrize("arch,aux", sorted(REFERENCE_SIZES))
def test_parameter_and_entry_counts_match_reference(arch, aux):
    model = get_arch(arch).build(1000, aux_logits=aux)
    params, entries = REFERENCE_SIZES[(arch, aux)]
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == entries


def test_aux_heads_only_where_the_architecture_has_them():
    with pytest.raises(InceptionDeployError, match="v4 has no auxiliary heads"):
        create_model("v4", aux_logits=True)


@pytest.mark.parametrize("arch", EXPORTED)
def test_eval_gives_finite_logits_of_realistic_size(arch, built_models):
    model = built_models(arch)
    assert not model.training
    with torch.no_grad():
        logits = model(synthetic_batch(get_arch(arch), count=2, seed=5))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 1000)
    assert torch.isfinite(logits).all()
    # far from the ~1e11 of uncalibrated batch norm, and not collapsed to a constant
    assert 1e-2 < logits.abs().max() < 100
    assert logits.std(dim=1).min() > 1e-3


@pytest.mark.parametrize(
    "arch,size",
    [
        ("v1", 75),
        ("v2", 64),
        ("v2", 256),
        ("v3", 75),
        ("v4", 75),
        ("resnet-v1", 160),
        ("resnet-v2", 75),
        ("xception", 75),
        ("resnet50", 97),
        ("densenet121", 64),
        ("resnest50d", 160),
        ("inception_next_tiny", 160),
        ("skresnet18", 97),
    ],
)
def test_other_input_sizes_and_batch_sizes(arch, size, built_models):
    model = built_models(arch)
    check_input_size(get_arch(arch), size)
    x = synthetic_batch(get_arch(arch), count=3, seed=1, input_size=size)
    with torch.no_grad():
        batched = model(x)
        single = model(x[1:2])
    assert batched.shape == (3, 1000) and torch.isfinite(batched).all()
    # eval mode: each image's logits do not depend on its batch mates
    torch.testing.assert_close(single[0], batched[1], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "arch,size,message",
    [
        ("v3", 74, "arch v3 needs an input of at least 75 pixels, not 74"),
        ("v1", 14, "arch v1 needs an input of at least 15 pixels, not 14"),
        ("v2", 299, "input size 299 is not supported by arch v2"),
        ("v3", 100000, "input size 100000 is above the limit of 4096 pixels"),
        ("densenet121", 28, "arch densenet121 needs an input of at least 29 pixels, not 28"),
        ("inception_next_atto", 31, "arch inception_next_atto needs an input of at least 32 pixels, not 31"),
    ],
)
def test_unsupported_input_size_is_one_clear_error(arch, size, message):
    with pytest.raises(InceptionDeployError, match=message):
        check_input_size(get_arch(arch), size)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_stated_minimum_input_size_is_the_networks_own(spec):
    """The registry's min_input_size runs and one pixel less does not (traced on the meta device)."""

    def runs(size):
        with torch.device("meta"):
            try:
                spec.build().eval()(torch.empty(1, 3, size, size))
                return True
            except RuntimeError:
                return False

    assert runs(spec.min_input_size) and not runs(spec.min_input_size - 1)


def test_one_class_serves_several_archs_and_each_module_knows_its_own(built_models):
    """The ResNet trunk builds resnet50 and seresnet50: stages given a module find its spec by name."""
    from inception_deploy.models import spec_for_model

    for arch in ("resnet50", "seresnet50", "v3"):
        assert spec_for_model(built_models(arch)) is get_arch(arch)
    assert type(built_models("resnet50")) is type(built_models("seresnet50"))
    assert spec_for_model(torch.nn.Linear(2, 2)) is None


def test_v1_train_mode_returns_both_aux_outputs():
    model = create_model("v1", num_classes=10, aux_logits=True).train()
    out = model(synthetic_batch(get_arch("v1"), count=2))
    assert out._fields == ("logits", "aux_logits2", "aux_logits1")
    assert [t.shape for t in out] == [(2, 10)] * 3
    assert isinstance(model.eval()(synthetic_batch(get_arch("v1"), count=2)), torch.Tensor)


def test_v3_train_mode_returns_aux_logits():
    model = create_model("v3", num_classes=7, aux_logits=True).train()
    out = model(synthetic_batch(get_arch("v3"), count=2))
    assert out._fields == ("logits", "aux_logits")
    assert out.logits.shape == out.aux_logits.shape == (2, 7)
    with torch.no_grad():
        assert model.eval()(synthetic_batch(get_arch("v3"), count=2)).shape == (2, 7)


def test_calibrate_batchnorm_tames_random_init_and_restores_state():
    spec = get_arch("v3")
    model = spec.build().eval()
    x = synthetic_batch(spec, count=2)
    with torch.no_grad():
        raw = model(x)
    # BN statistics 0/1 with PyTorch's default init: activations fade layer after layer until
    # the logits no longer depend on the image (with torchvision's init they explode instead)
    assert (raw[0] - raw[1]).abs().max() < 1e-3 * raw.abs().max()
    bn = model.Mixed_5b.branch1x1.bn
    calibrate_batchnorm(model, [x])
    with torch.no_grad():
        calibrated = model(x)
    assert calibrated.abs().max() < 100
    assert (calibrated[0] - calibrated[1]).abs().max() > 0.05 * calibrated.abs().max()
    assert not model.training and not bn.training and bn.momentum == 0.1
    assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    with pytest.raises(ValueError, match="at least one batch"):
        calibrate_batchnorm(model, [])


def test_a_random_init_networks_statistics_are_calibrated_once_per_process(monkeypatch):
    """create_model without weights calibrates the batch norms on images once per network and
    process; a second build of the same network copies them and is the same network, parameter
    for parameter; another class count is another network, calibrated anew."""
    from inception_deploy.checkpoints import zoo

    calls = []
    monkeypatch.setattr(zoo, "calibrate_batchnorm", lambda *a: calls.append(1) or calibrate_batchnorm(*a))
    monkeypatch.setattr(zoo, "_RANDOM_INIT_STATISTICS", {})
    first, second = create_model("v1", num_classes=7), create_model("v1", num_classes=7)
    assert len(calls) == 1
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["inception3a.branch1.bn.running_var"], torch.ones(64))
    create_model("v1", num_classes=8)
    assert len(calls) == 2


def test_export_lists_the_registry_without_needing_an_arch():
    from click.testing import CliRunner

    from inception_deploy.cli import main

    result = CliRunner().invoke(main, ["export", "--list-archs"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines()[2:]}
    assert list(rows) == ARCHS
    assert " resnet-v1, inception_resnet_v1 " in rows["inception-resnet-v1"] and " ResNeSt " in rows["resnest50d"]
    assert "timm res2net50_26w_4s" in rows["res2net50_26w_4s"] and rows["densenet121"].split()[-2:] == ["224", "yes"]
