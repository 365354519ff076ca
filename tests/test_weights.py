import pickle

import pytest
import torch
from archs import EXPORTED
from safetensors.torch import save_file

from inception_deploy import create_model
from inception_deploy.checkpoints.weights import load_weights, read_checkpoint
from inception_deploy.checkpoints.zoo import synthetic_batch
from inception_deploy.errors import WeightsError
from inception_deploy.models import get_arch


@pytest.fixture(scope="module")
def v1_aux():
    """A v1 with aux heads and data-driven BN statistics: the torchvision checkpoint shape."""
    return create_model("v1", aux_logits=True)


def _logits(model, arch="v1"):
    with torch.no_grad():
        return model.eval()(synthetic_batch(get_arch(arch), count=2, seed=9))


@pytest.mark.parametrize("arch", EXPORTED)
def test_strict_round_trip_gives_identical_logits(arch, built_models, tmp_path):
    original = built_models(arch)
    path = tmp_path / f"{arch}.pth"
    torch.save(original.state_dict(), path)
    loaded = create_model(arch, weights=path)
    assert set(loaded.state_dict()) == set(original.state_dict())
    torch.testing.assert_close(_logits(loaded, arch), _logits(original, arch), rtol=0, atol=0)


@pytest.mark.parametrize(
    "layout", ["raw.pth", "state_dict.pt", "model.bin", "module.pth", "compiled.pth", "ema.safetensors"]
)
def test_checkpoint_formats(layout, v1_aux, tmp_path, caplog):
    state = v1_aux.state_dict()
    path = tmp_path / layout
    if layout.startswith("state_dict"):
        torch.save({"state_dict": state, "epoch": 90, "best_acc1": 69.8}, path)
    elif layout.startswith("model"):
        torch.save({"model": state, "optimizer": {"lr": 0.1}}, path)
    elif layout.startswith("module"):
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif layout.startswith("compiled"):
        torch.save({f"_orig_mod.{k}": v for k, v in state.items()}, path)
    elif layout.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    model = create_model("v1", weights=path)  # no aux heads: their keys are dropped
    torch.testing.assert_close(_logits(model), _logits(v1_aux), rtol=0, atol=0)
    assert "dropped 20 auxiliary-head entries (aux1, aux2)" in caplog.text


def test_aux_model_loads_aux_checkpoint(v1_aux, tmp_path):
    path = tmp_path / "aux.pth"
    torch.save(v1_aux.state_dict(), path)
    model = create_model("v1", aux_logits=True, weights=path)
    assert torch.equal(model.aux1.fc2.weight, v1_aux.aux1.fc2.weight)


def test_aux_model_from_checkpoint_without_aux_heads(v1_aux, tmp_path):
    path = tmp_path / "noaux.pth"
    torch.save({k: v for k, v in v1_aux.state_dict().items() if not k.startswith("aux")}, path)
    with pytest.raises(
        WeightsError, match="missing 20 keys: aux1.conv.conv.weight.*hint: checkpoint has no auxiliary heads"
    ):
        create_model("v1", aux_logits=True, weights=path)


def test_class_count_mismatch_hints_num_classes(tmp_path):
    spec = get_arch("v1")
    path = tmp_path / "ten.pth"
    torch.save(spec.build(num_classes=10).state_dict(), path)
    with pytest.raises(WeightsError) as e:
        load_weights(spec.build(), path)
    message = str(e.value)
    assert message.startswith(f"{path}: checkpoint does not fit arch v1 (torchvision googlenet layout)")
    assert "fc.weight: checkpoint (10, 1024) vs model (1000, 1024)" in message
    assert message.endswith("hint: checkpoint has 10 classes: pass num_classes=10")
    assert "\n" not in message
    load_weights(spec.build(num_classes=10), path)  # following the hint works


def test_missing_unexpected_and_mismatched_keys_are_listed(tmp_path):
    spec = get_arch("v1")
    state = spec.build().state_dict()
    del state["conv1.conv.weight"]
    state["extra.weight"] = torch.zeros(3)
    state["conv2.bn.bias"] = torch.zeros(5)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as e:
        load_weights(spec.build(), path)
    message = str(e.value)
    assert "missing 1 keys: conv1.conv.weight" in message
    assert "unexpected 1 keys: extra.weight" in message
    assert "1 shape mismatches: conv2.bn.bias: checkpoint (5,) vs model (64,)" in message


def test_checkpoint_of_another_architecture(tmp_path):
    path = tmp_path / "xception.pth"
    torch.save(get_arch("xception").build().state_dict(), path)
    with pytest.raises(
        WeightsError,
        match=r"does not fit arch v2 .*missing 485 keys.*\(\+480 more\).*"
        r"hint: no key matches",
    ):
        load_weights(get_arch("v2").build(), path)


def test_a_checkpoint_of_a_sibling_layout_is_one_line_exit_2(tmp_path):
    """inception_next_tiny's file given to inception_next_small (the same blocks, 9 instead of 27
    in stage 3): the CLI names the missing keys, exits 2 and writes nothing."""
    from click.testing import CliRunner

    from inception_deploy.cli import main

    path = tmp_path / "inception_next_tiny.pth"
    torch.save(get_arch("inception_next_tiny").build().state_dict(), path)
    args = ["export", "--arch", "inception_next_small", "--weights", str(path), "-o", str(tmp_path / "small.onnx")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"error: {path}: checkpoint does not fit arch inception_next_small (timm inception_next_small"
    )
    assert "missing 288 keys: stages.2.blocks.9.gamma" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("arch", ["v4", "resnet-v2"])
def test_tensorflow_background_class_is_dropped(arch, tmp_path, caplog):
    spec = get_arch(arch)
    published = spec.build(num_classes=1001).state_dict()  # 1001 outputs: background first
    path = tmp_path / "tf_port.pth"
    torch.save(published, path)
    model = load_weights(spec.build(), path)
    head = model.get_submodule(spec.classifier)
    assert torch.equal(head.weight, published[f"{spec.classifier}.weight"][1:])
    assert torch.equal(head.bias, published[f"{spec.classifier}.bias"][1:])
    assert "dropped 1 leading background class(es)" in caplog.text
    # a 1001-class model keeps every row
    assert load_weights(spec.build(num_classes=1001), path) is not None


def test_torchvision_densenet_files_with_old_key_names_load(built_models, tmp_path, caplog):
    """torchvision's published densenet121 file names its layers' modules "norm.1", "conv.2", ...
    and, saved by PyTorch 0.3, has no BatchNorm num_batches_tracked entries."""
    original = built_models("densenet121")
    old_names = {}
    for key, value in original.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        # features.denseblock1.denselayer1.norm1.weight -> features.denseblock1.denselayer1.norm.1.weight
        parts = key.split(".")
        if len(parts) > 3 and parts[-3].startswith("denselayer") and parts[-2][-1] in "12":
            key = ".".join([*parts[:-2], parts[-2][:-1], parts[-2][-1], parts[-1]])
        old_names[key] = value
    assert "features.denseblock4.denselayer16.conv.2.weight" in old_names
    path = tmp_path / "densenet121-a639ec97.pth"
    torch.save(old_names, path)
    loaded = create_model("densenet121", weights=path)
    torch.testing.assert_close(_logits(loaded, "densenet121"), _logits(original, "densenet121"), rtol=0, atol=0)
    assert "renamed 580 entries of the reference's older key layout" in caplog.text
    assert "no num_batches_tracked in 121 BatchNorm layers" in caplog.text


class _NotATensor:
    pass


@pytest.mark.parametrize(
    "content,expected",
    [
        (None, "no such checkpoint file"),
        (b"", "checkpoint file is empty"),
        (b"\x00garbage that is not a zip nor a pickle" * 10, "not a plain tensor checkpoint"),
        (b"PK\x03\x04truncated zip", "not a readable PyTorch checkpoint"),
        ("pickle", r"pickled Python object \(test_weights._NotATensor\) that safe loading refuses"),
        ("no-tensors", "not a state_dict"),
    ],
)
def test_unreadable_checkpoints(content, expected, tmp_path):
    path = tmp_path / "bad.pth"
    if content == "pickle":
        torch.save({"fc.weight": _NotATensor()}, path)
    elif content == "no-tensors":
        torch.save({"epoch": 3, "arch": "v1"}, path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match=expected) as e:
        read_checkpoint(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_corrupt_safetensors(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        read_checkpoint(path)


def test_plain_pickle_is_refused_not_executed(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"conv1.conv.weight": _NotATensor()}))
    with pytest.raises(WeightsError):
        read_checkpoint(path)
