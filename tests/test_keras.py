"""Keras checkpoints: keras.applications InceptionV3, InceptionResNetV2 and Xception, run by Keras
3 itself on the torch backend (side folder from scripts/reference_env.sh), saved in the three file
formats, loaded into our networks with h5py only, and compared logit for logit on the shipped
photos. The reference cases skip where Keras is not installed; the refusal cases need no Keras.
"""

import json
import shutil
import zipfile

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from keras_reference import calibrate, import_keras, keras_logits, keras_model

from inception_deploy.checkpoints.keras import BUILD_OPTIONS, KERAS_NAMES, KERAS_PREPROCESS
from inception_deploy.checkpoints.zoo import create_model, default_preprocess
from inception_deploy.cli import main
from inception_deploy.errors import InceptionDeployError, WeightsError
from inception_deploy.inputs import sample_photos
from inception_deploy.preprocess import PreprocessConfig, load_image, preprocess

FORMATS = [".keras", ".weights.h5", ".h5"]


@pytest.fixture(scope="module")
def keras():
    module = import_keras()
    if module is None:
        pytest.skip("Keras is not installed (scripts/reference_env.sh installs it beside the project)")
    return module


@pytest.fixture(scope="module")
def photos():
    """The shipped photos as Keras's preprocessing gives them, NCHW for us and NHWC for Keras."""
    x = preprocess(sample_photos(), KERAS_PREPROCESS)
    return x, np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _save(model, path):
    model.save_weights(path) if path.name.endswith(".weights.h5") else model.save(path)
    return path


def _logits(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).double().numpy()


def _max_rel(ours, reference):
    return np.abs(ours - reference).max() / np.abs(reference).max()


@pytest.fixture(scope="module")
def saved(keras, photos, tmp_path_factory):
    """arch -> (Keras's logits on the photos, {format: file}), each model built once."""
    cache = {}

    def get(arch):
        if arch not in cache:
            model = keras_model(keras, arch, photos[1])
            folder = tmp_path_factory.mktemp(arch)
            cache[arch] = keras_logits(model, photos[1]), {f: _save(model, folder / f"model{f}") for f in FORMATS}
        return cache[arch]

    return get


@pytest.mark.parametrize("arch", list(KERAS_NAMES))
def test_logits_equal_keras_in_every_format(arch, saved, photos):
    reference, files = saved(arch)
    assert np.abs(reference).max() > 0.5  # calibrated statistics: the network computes something
    for path in files.values():
        ours = _logits(create_model(arch, weights=path), photos[0])
        assert _max_rel(ours, reference) <= 1e-4, path.name
        assert (ours.argmax(1) == reference.argmax(1)).all(), path.name


@pytest.mark.parametrize(
    "arch, option, torch_value",
    [
        ("v3", "count_include_pad", True),
        ("xception", "bn_eps", 1e-5),
        ("xception", "same_pooling", False),
    ],
)
def test_each_keras_numerics_option_is_needed(arch, option, torch_value, saved, photos):
    """The PyTorch layouts' own numerics, one option at a time, move the logits well past the bound."""
    from inception_deploy.checkpoints.keras import keras_state_dict
    from inception_deploy.models.registry import get_arch

    reference, files = saved(arch)
    spec = get_arch(arch)
    model = spec.build(**BUILD_OPTIONS[arch])
    state = keras_state_dict(model, spec, files[".keras"])
    wrong = spec.build(**{**BUILD_OPTIONS[arch], option: torch_value}).eval()
    wrong.load_state_dict(state)
    assert _max_rel(_logits(wrong, photos[0]), reference) > 1e-3


def test_a_model_built_without_keras_numerics_is_refused(saved):
    from inception_deploy.checkpoints.weights import load_weights
    from inception_deploy.models.registry import get_arch

    model = get_arch("xception").build()  # timm's numerics
    with pytest.raises(WeightsError, match="Keras's numerics"):
        load_weights(model, saved("xception")[1][".keras"])


def _dense_top(classes):
    return lambda keras, features: keras.layers.Dense(classes)(keras.layers.GlobalAveragePooling2D()(features))


def test_fine_tuned_top_with_another_class_count(keras, photos, tmp_path):
    """The usual fine-tuning: include_top=False, global average pool, one Dense (in a .keras file:
    its config is checked too); and in a nested Sequential (the application as one layer), in
    each format."""
    model = keras_model(keras, "v3", photos[1], top=_dense_top(5))
    reference = keras_logits(model, photos[1])
    base = keras.applications.Xception(weights=None, include_top=False, pooling="avg", input_shape=(299, 299, 3))
    nested = calibrate(keras, keras.Sequential([keras.Input((299, 299, 3)), base, keras.layers.Dense(3)]), photos[1])
    nested_reference = keras_logits(nested, photos[1])
    path = _save(model, tmp_path / "top.keras")
    assert _max_rel(_logits(create_model("v3", num_classes=5, weights=path), photos[0]), reference) <= 1e-4
    for suffix in FORMATS:
        path = _save(nested, tmp_path / f"nested{suffix}")
        assert (
            _max_rel(_logits(create_model("xception", num_classes=3, weights=path), photos[0]), nested_reference)
            <= 1e-4
        )
    with pytest.raises(WeightsError, match="has 5 classes: pass num_classes=5"):
        create_model("v3", weights=tmp_path / "top.keras")


def test_tops_that_cannot_be_mapped_are_refused(keras, photos, tmp_path):
    def two_dense(keras, features):
        hidden = keras.layers.Dense(64, activation="relu")(keras.layers.GlobalAveragePooling2D()(features))
        return keras.layers.Dense(5)(hidden)

    _save(keras_model(keras, "v3", photos[1][:2], top=two_dense), tmp_path / "two.keras")
    with pytest.raises(WeightsError, match=r"custom top of 2 Dense layers .* cannot be mapped"):
        create_model("v3", num_classes=5, weights=tmp_path / "two.keras")
    headless = keras.applications.InceptionV3(weights=None, include_top=False, input_shape=(299, 299, 3))
    _save(headless, tmp_path / "headless.weights.h5")
    with pytest.raises(WeightsError, match="no Dense classifier"):
        create_model("v3", weights=tmp_path / "headless.weights.h5")
    # weightless layers that compute what our network does not, seen in the saved config
    max_pool = keras.Model(headless.input, keras.layers.Dense(5)(keras.layers.GlobalMaxPooling2D()(headless.output)))
    _save(max_pool, tmp_path / "max.keras")
    with pytest.raises(WeightsError, match=r"\(GlobalMaxPooling2D\) has no counterpart in v3"):
        create_model("v3", num_classes=5, weights=tmp_path / "max.keras")
    relu = keras.layers.Activation("relu")(keras.layers.GlobalAveragePooling2D()(headless.output))
    _save(keras.Model(headless.input, keras.layers.Dense(5)(relu)), tmp_path / "relu.h5")
    with pytest.raises(WeightsError, match="has 95 ReLU activation layers where Keras's InceptionV3 has 94"):
        create_model("v3", num_classes=5, weights=tmp_path / "relu.h5")


def test_a_custom_layers_weights_are_not_skipped(keras, tmp_path):
    """A custom layer keeps its sublayers' variables under their attribute names (no config in a
    .weights.h5 to say what it computes): they have no place in our network."""

    class NormalizedHead(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.norm = keras.layers.LayerNormalization()

        def call(self, x):
            return self.norm(x)

    base = keras.applications.Xception(weights=None, include_top=False, pooling="avg", input_shape=(299, 299, 3))
    model = keras.Model(base.input, keras.layers.Dense(4)(NormalizedHead()(base.output)))
    _save(model, tmp_path / "custom.weights.h5")
    with pytest.raises(WeightsError, match=r"layers that xception has no place for: .*\(other: "):
        create_model("xception", num_classes=4, weights=tmp_path / "custom.weights.h5")


def test_another_architectures_file_is_refused_by_name(saved):
    with pytest.raises(WeightsError, match=r"no conv2d layer named block1_conv1 \(for conv1\); is this a Keras Xcep"):
        create_model("xception", weights=saved("v3")[1][".weights.h5"])
    with pytest.raises(WeightsError, match="not arch resnet50"):
        create_model("resnet50", weights=saved("v3")[1][".keras"])


def _strip_layer_names(source, target):
    """A Keras 3.0-3.5 file: no layer names beside the variables."""
    shutil.copy(source, target)
    with h5py.File(target, "r+") as f:
        f.visititems(lambda name, item: item.attrs.__delitem__("name") if "name" in item.attrs else None)
    return target


def test_files_of_keras_before_3_6(saved, photos, tmp_path):
    """Without names in the weights file, a .keras archive's config.json still names every layer
    (the file numbers them per class in model.layers order); a bare .weights.h5 cannot, and says so."""
    reference, files = saved("inception-resnet-v2")
    bare = _strip_layer_names(files[".weights.h5"], tmp_path / "old.weights.h5")
    with pytest.raises(WeightsError, match="before 3.6"):
        create_model("inception-resnet-v2", weights=bare)
    with zipfile.ZipFile(files[".keras"]) as archive:
        archive.extract("model.weights.h5", tmp_path)
        members = {name: archive.read(name) for name in archive.namelist() if name != "model.weights.h5"}
    _strip_layer_names(tmp_path / "model.weights.h5", tmp_path / "stripped.h5")
    with zipfile.ZipFile(tmp_path / "old.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.write(tmp_path / "stripped.h5", "model.weights.h5")
    ours = _logits(create_model("inception-resnet-v2", weights=tmp_path / "old.keras"), photos[0])
    assert _max_rel(ours, reference) <= 1e-4


@pytest.mark.parametrize(
    "variable, value, message",
    [("kernel", np.nan, "non-finite"), ("moving_variance", -1.0, "negative batch-norm variance")],
)
def test_keras_weights_no_trained_network_has_are_refused(saved, tmp_path, variable, value, message):
    """A NaN kernel or a negative moving variance in a real Keras file: one line naming the file
    and the tensor, exit 2, nothing exported."""
    _, files = saved("xception")
    path = tmp_path / "damaged.weights.h5"
    shutil.copyfile(files[".weights.h5"], path)
    with h5py.File(path, "r+") as f:
        names = []
        f.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        layer = "block1_conv1" if variable == "kernel" else "block1_conv1_bn"
        index = {"kernel": 0, "moving_variance": 3}[variable]
        dataset = f[
            next(n for n in names if f[n.rsplit("/", 1)[0]].attrs.get("name") == layer and n.endswith(f"vars/{index}"))
        ]
        data = dataset[()]
        data.flat[0] = value
        dataset[()] = data
    output = tmp_path / "o.onnx"
    result = CliRunner().invoke(main, ["export", "--arch", "xception", "--weights", str(path), "-o", str(output)])
    assert result.exit_code == 2 and not output.exists()
    assert str(path) in result.stderr and message in result.stderr and len(result.stderr.splitlines()) == 1


def test_the_pipeline_runs_on_a_keras_checkpoint(saved, tmp_path):
    """Export (parity judged against eager on the converted weights), INT8 and a Triton repository
    from a .keras file; inception-run then needs no flags: the artifact carries Keras's
    preprocessing, and its top-1 on each photo is Keras's own. (FP16 reads only the FP32 file,
    wherever its weights came from: tests/test_precision.py and tests/test_backbones.py.)"""
    from inception_deploy.calibration.policy import CalibrationRequest
    from inception_deploy.inputs import sample_folder
    from inception_deploy.pipeline import EngineOptions, ExportRequest, Int8Request, deploy

    reference, files = saved("xception")
    result = deploy(
        ExportRequest("xception", tmp_path / "xception.onnx", weights=files[".keras"]),
        # bias correction (tested in test_precision.py) off: on Xception it measures 40 Convs one by one
        int8=Int8Request(CalibrationRequest(sample_folder(), method="minmax"), target="cpu", bias_correction=False),
        triton_repository=tmp_path / "repo",
        engine=EngineOptions("no"),
    )
    fp32, int8 = result.artifacts
    assert fp32.metadata["preprocess"] == KERAS_PREPROCESS.to_dict()
    assert fp32.metadata["weights"]["file"] == "model.keras"
    assert fp32.parity.passed, fp32.parity.table()
    assert min(row.cosine for row in int8.parity.rows) > 0.9, int8.parity.table()
    assert {m.name for m in result.triton} == {"xception", "xception_int8_cpu"}
    run = CliRunner().invoke(main, ["run", str(fp32.path), "--samples", "--json"])
    assert run.exit_code == 0, run.output
    top1 = [json.loads(line)["indices"][0] for line in run.stdout.splitlines()]
    assert top1 == reference.argmax(1).tolist()


# --- refusals that need no Keras ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("model.keras", b"not a zip", "not a zip archive"),
        ("model.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "not a readable Keras file"),
        ("model.weights.h5", b"", "checkpoint file is empty"),
        ("model.weights.h5", b"PK\x05\x06" + b"\0" * 18, "a zip archive without model.weights.h5"),
    ],
)
def test_unreadable_keras_files_fail_in_one_line(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    output = tmp_path / "o.onnx"
    result = CliRunner().invoke(main, ["export", "--arch", "v3", "--weights", str(path), "-o", str(output)])
    assert result.exit_code == 2
    assert problem in result.output and str(path) in result.output and len(result.output.splitlines()) == 1
    assert not output.exists()


def _keras3_file(path, **datasets):
    """A minimal Keras 3 .weights.h5: one named conv2d layer holding ``datasets``."""
    with h5py.File(path, "w") as f:
        variables = f.create_group("layers/conv2d/vars")
        variables.attrs["name"] = "conv2d"
        for key, make in datasets.items():
            make(variables, key)
    return path


def test_checkpoints_that_read_other_files_are_refused(tmp_path):
    """h5py follows external storage and external links: a checkpoint could copy a local file's
    bytes into weights that are then exported and served."""
    (tmp_path / "secret.bin").write_bytes(b"\1" * 108)
    external = _keras3_file(
        tmp_path / "external.weights.h5",
        **{
            "0": lambda g, k: g.create_dataset(
                k, shape=(3, 3, 3, 1), dtype="float32", external=[(str(tmp_path / "secret.bin"), 0, 108)]
            )
        },
    )
    with pytest.raises(WeightsError, match="reads its data from other files"):
        create_model("v3", weights=external)
    linked = _keras3_file(
        tmp_path / "linked.weights.h5",
        **{"0": lambda g, k: g.__setitem__(k, h5py.ExternalLink(str(external), "/layers/conv2d/vars/0"))},
    )
    with pytest.raises(WeightsError, match="is a link to elsewhere"):
        create_model("v3", weights=linked)


@pytest.mark.parametrize(
    "config, problem",
    [
        ("[1]", "not a Keras model's"),
        ('{"config": {"layers": [1]}}', "not a Keras model's"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_keras_configs_fail_in_one_line(tmp_path, config, problem):
    weights = _keras3_file(tmp_path / "model.weights.h5")
    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:
        archive.writestr("config.json", config)
        archive.write(weights, "model.weights.h5")
    with pytest.raises(InceptionDeployError, match=problem):
        create_model("v3", weights=tmp_path / "model.keras")


def test_a_group_where_weights_should_be_is_refused(tmp_path):
    path = _keras3_file(tmp_path / "group.weights.h5", **{"0": lambda g, k: g.create_group(k)})
    with pytest.raises(WeightsError, match="is not a dataset of weights"):
        create_model("v3", weights=path)


def test_hdf5_and_zip_files_without_keras_layers(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(WeightsError, match="without Keras layers"):
        create_model("v3", weights=tmp_path / "other.h5")
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(WeightsError, match="without model.weights.h5"):
        create_model("v3", weights=tmp_path / "other.keras")


def test_keras_weights_default_to_keras_preprocessing():
    from inception_deploy.models.registry import get_arch

    spec = get_arch("xception")
    assert default_preprocess(spec, "fine_tuned.keras") == KERAS_PREPROCESS
    assert default_preprocess(spec, "timm.pth") == spec.preprocess


def test_stretched_pixels_are_keras_load_img(keras, tmp_path):
    """keep_aspect=False gives the pixels of keras.utils.load_img(target_size=(299, 299)) with the
    same filter, on a photo that is not square."""
    photo = tmp_path / "wide.png"
    from PIL import Image

    Image.open(sample_photos()[0]).convert("RGB").crop((0, 0, 512, 300)).save(photo)
    config = PreprocessConfig(299, 299, "bilinear", (0.5,) * 3, (0.5,) * 3, keep_aspect=False)
    theirs = np.asarray(keras.utils.load_img(photo, target_size=(299, 299), interpolation="bilinear"), np.float32)
    np.testing.assert_array_equal(load_image(photo, config), theirs / 255)


def _legacy_variant(source, target, layout):
    """A Keras 3 legacy .h5 rewritten as older Keras wrote it: ``keras2`` (variable names with
    ':0'), ``keras2-weights`` (save_weights: the layers at the file's root), ``keras3.0``
    (Keras 3.0-3.2: bare variable names)."""
    with h5py.File(source, "r") as src, h5py.File(target, "w") as out:
        root = out if layout == "keras2-weights" else out.create_group("model_weights")
        layers = src["model_weights"]
        root.attrs["layer_names"] = layers.attrs["layer_names"]
        for name in layers.attrs["layer_names"]:
            group = root.create_group(name)
            renamed = []
            for weight in layers[name].attrs["weight_names"]:
                new = {"keras3.0": weight.split("/")[-1]}.get(layout, f"{weight}:0")
                group.create_dataset(new, data=layers[name][weight][()])
                renamed.append(new)
            group.attrs["weight_names"] = renamed
    return target


@pytest.mark.parametrize("layout", ["keras2", "keras2-weights", "keras3.0"])
def test_older_keras_hdf5_layouts(layout, saved, photos, tmp_path):
    reference, files = saved("xception")
    path = _legacy_variant(files[".h5"], tmp_path / f"{layout}.h5", layout)
    assert _max_rel(_logits(create_model("xception", weights=path), photos[0]), reference) <= 1e-4


def test_hostile_classifier_shape_is_refused_before_reading(saved, tmp_path):
    """A Dense kernel declared 2048 x 4M (32 GiB, stored sparse in a small file) is refused from
    its shape, never read."""
    path = tmp_path / "huge.weights.h5"
    shutil.copy(saved("xception")[1][".weights.h5"], path)
    with h5py.File(path, "r+") as f:
        del f["layers/dense/vars/0"]
        f["layers/dense/vars"].create_dataset("0", shape=(2048, 1 << 22), dtype="float32", chunks=(64, 64))
    with pytest.raises(WeightsError, match="is not a classifier on xception's 2048 pooled features"):
        create_model("xception", weights=path)
