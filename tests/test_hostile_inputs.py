"""Hostile input across the commands: every case ends in one clear line naming the culprit, the
right exit code, no traceback, nothing half-written, and the valid inputs still processed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hostile import TINY_SIZE, cli, one_error_line, tiny_classifier, tiny_metadata, unprivileged
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from inception_deploy.calibration.cache import FORMAT, CalibrationCache
from inception_deploy.errors import InceptionDeployError, printable
from inception_deploy.fileio import PLOT, atomic_path
from inception_deploy.inputs import InputError, expand_inputs, sample_photos
from inception_deploy.metadata import MAX_DOCUMENT_BYTES, parse_metadata, validate_metadata
from inception_deploy.runtime import Predictor


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(sample_photos()[0].read_bytes())
    return path


def _doctored(meta_change):
    meta = tiny_metadata()
    meta_change(meta)
    return meta


# (what is wrong, how to break a valid document, the field the error must name)
DOCTORED = [
    ("zero classes", lambda m: m.update(num_classes=0), "num_classes is 0"),
    ("classes as text", lambda m: m.update(num_classes="3"), "num_classes must be an integer"),
    ("absurd classes", lambda m: m.update(num_classes=10**9), "num_classes is 1000000000"),
    ("label count", lambda m: m["labels"].update(names=["a", "b"]), "labels.names has 2 names but num_classes is 3"),
    ("labels not strings", lambda m: m["labels"].update(names=[1, 2, 3]), "labels.names must be a list of strings"),
    ("zero std", lambda m: m["preprocess"].update(std=[0.5, 0, 0.5]), "preprocess.std is 0"),
    ("infinite mean", lambda m: m["preprocess"].update(mean=[float("inf"), 0, 0]), "preprocess.mean must be a finite"),
    ("negative size", lambda m: m["preprocess"].update(input_size=-1), "preprocess.input_size is -1"),
    ("size as float", lambda m: m["preprocess"].update(input_size=16.0), "preprocess.input_size must be an integer"),
    ("resize below crop", lambda m: m["preprocess"].update(resize_size=8), "preprocess.resize_size is 8"),
    ("unknown filter", lambda m: m["preprocess"].update(interpolation="magic"), "preprocess.interpolation"),
    ("unknown field", lambda m: m["preprocess"].update(gamma=2.2), "preprocess.gamma is not a preprocessing field"),
    ("aspect as text", lambda m: m["preprocess"].update(keep_aspect="no"), "preprocess.keep_aspect must be true or"),
    ("no preprocess", lambda m: m.pop("preprocess"), "preprocess is missing"),
    ("zero max batch", lambda m: m.update(max_batch=0), "max_batch is 0"),
    ("bool max batch", lambda m: m.update(max_batch=True), "max_batch must be an integer"),
    ("newer schema", lambda m: m.update(schema=99), "written by a newer inception-deploy"),
    ("unknown precision", lambda m: m.update(precision="int4"), 'precision is "int4"'),
    (
        "size vs graph",
        lambda m: m["preprocess"].update(input_size=20, resize_size=24),
        f"preprocess.input_size is 20 but the model's input is {TINY_SIZE}x{TINY_SIZE}",
    ),
]


@pytest.mark.parametrize("name,change,field", DOCTORED, ids=[d[0] for d in DOCTORED])
def test_doctored_metadata_is_blamed_on_the_model(name, change, field, tmp_path, photo):
    model = tiny_classifier(tmp_path / "m.onnx", _doctored(change))
    code, stdout, stderr = cli("run", model, photo)
    assert code == 2 and stdout == ""
    one_error_line(stderr, str(model), field)


@pytest.mark.parametrize(
    "document,message",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"num_classes": 3,', "corrupt 'inception_deploy' metadata"),
        ("1" * 5000, "corrupt 'inception_deploy' metadata"),
        ('"just a string"', "must be a JSON object"),
        (json.dumps({"pad": "x" * (MAX_DOCUMENT_BYTES + 1)}), "refusing more than 32 MiB"),
    ],
    ids=["deep", "truncated", "huge-int", "string", "huge"],
)
def test_hostile_json_is_refused(document, message, tmp_path, photo):
    model = tiny_classifier(tmp_path / "m.onnx", document)
    code, _, stderr = cli("run", model, photo)
    assert code == 2
    one_error_line(stderr, str(model), message)


def test_a_valid_tiny_model_runs(tmp_path, photo):
    """The doctored cases above fail because of their one change, not the tiny model."""
    code, stdout, _ = cli("run", tiny_classifier(tmp_path / "m.onnx"), photo, "--json")
    assert code == 0 and json.loads(stdout)["labels"][0].startswith("class ")


def test_labels_with_control_characters_are_printed_escaped(tmp_path, photo):
    meta = tiny_metadata()
    meta["labels"]["names"] = ["\x1b[2J\x1b[31mred", "two\nlines", "\u202eevil"]
    model = tiny_classifier(tmp_path / "m.onnx", meta)
    code, stdout, _ = cli("run", model, photo, "--topk", "3")
    assert code == 0
    assert "\x1b" not in stdout and "\u202e" not in stdout and len(stdout.splitlines()) == 5  # header, rule, 3 rows
    assert "\\x1b[2J\\x1b[31mred" in stdout and "two\\nlines" in stdout and "\\u202eevil" in stdout


def test_sidecar_is_validated_like_onnx_metadata(tmp_path, photo):
    engine = tmp_path / "m.plan"
    engine.write_bytes(b"plan")
    (tmp_path / "m.plan.json").write_text(json.dumps(_doctored(lambda m: m.update(num_classes=-5))))
    code, _, stderr = cli("run", engine, photo)
    assert code == 2
    one_error_line(stderr, "m.plan.json", "num_classes is -5")


def test_input_expansion_loses_and_hides_nothing(tmp_path, photo):
    model = tiny_classifier(tmp_path / "m.onnx")
    (tmp_path / "empty").mkdir()
    os.symlink(tmp_path / "gone.jpg", tmp_path / "dangling.jpg")
    folder = tmp_path / "folder"
    folder.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(folder / "red.png")
    os.symlink(tmp_path / "gone2.jpg", folder / "dangling2.jpg")
    os.mkfifo(folder / "fifo.jpg")  # would block a reader forever
    os.mkfifo(tmp_path / "list.txt")  # a list of inputs that is a pipe: the same
    inputs = [
        photo,
        tmp_path / "list.txt",
        tmp_path / "empty",
        f"{tmp_path}/*.nomatch",
        tmp_path / "dangling.jpg",
        folder,
        tmp_path / "missing.jpg",
    ]
    code, stdout, stderr = cli("run", model, *inputs, "--json")
    assert code == 1 and "Traceback" not in stderr
    results = [json.loads(line) for line in stdout.splitlines()]
    by_name = {Path(r["file"]).name: r for r in results}
    assert "labels" in by_name["photo.jpg"] and "labels" in by_name["red.png"]
    assert by_name["empty"]["error"].startswith("no images in this folder")
    assert by_name["*.nomatch"]["error"] == "no file matches this pattern"
    assert by_name["dangling.jpg"]["error"] == "dangling symbolic link"
    assert by_name["dangling2.jpg"]["error"] == "dangling symbolic link"
    assert by_name["fifo.jpg"]["error"] == by_name["list.txt"]["error"] == "not a regular file"
    assert by_name["missing.jpg"]["error"] == "no such file or folder"
    assert len([line for line in stderr.splitlines() if line.startswith("error: ")]) == 7
    assert stderr.rstrip().endswith("7 of 9 inputs failed")


def test_unreadable_files_and_folders_as_an_unprivileged_user(tmp_path):
    """Permissions only bind non-root users: run the expansion and the predictor as 'nobody'."""
    model = tiny_classifier(tmp_path / "m.onnx")
    predictor = Predictor(model, workers=2)
    Image.init()  # every image plugin imported now: 'nobody' may not read this environment's files
    shared = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        os.chmod(shared, 0o755)
        Image.new("RGB", (40, 30), (10, 200, 10)).save(shared / "ok.png")
        Image.new("RGB", (40, 30), (10, 10, 200)).save(shared / "secret.png")
        os.chmod(shared / "secret.png", 0o000)
        (shared / "locked").mkdir()
        Image.new("RGB", (40, 30)).save(shared / "locked" / "hidden.png")
        os.chmod(shared / "locked", 0o000)
        predictor.predict([shared / "ok.png"])  # warm up every lazy import as root
        with unprivileged():
            sources = expand_inputs([str(shared)])
            results = {Path(p.file).name: p for p in predictor.predict(sources)}
    finally:
        for path in (shared / "locked", shared / "secret.png"):
            os.chmod(path, 0o755)
        import shutil

        shutil.rmtree(shared)
    assert results["ok.png"].error is None
    assert results["secret.png"].error == "permission denied"
    assert results["locked"].error == "permission denied"  # the folder is reported, not silently skipped


def test_extreme_aspect_ratio_is_a_per_image_error(exported, tmp_path, photo):
    strip = tmp_path / "strip.png"
    Image.new("RGB", (16000, 1), (128, 128, 128)).save(strip)  # tiny on disk, 4,096,000 x 256 once resized
    assert strip.stat().st_size < 100_000
    results = Predictor(exported("v1").path).predict([strip, photo])
    assert results[0].error.startswith("refused: resizing 16000x1 to 4096000x256 needs about 8,389 MB")
    assert results[1].error is None


def test_label_file_mismatch_names_the_model(tmp_path, photo):
    model = tiny_classifier(tmp_path / "m.onnx")
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    code, _, stderr = cli("run", model, photo, "--labels", labels)
    assert code == 2
    one_error_line(stderr, f"{labels}: has 2 labels but {model} has 3 classes")


def test_control_characters_in_file_names_stay_on_one_line(tmp_path):
    model = tiny_classifier(tmp_path / "m.onnx")
    name = tmp_path / "evil\x1bc\nname.jpg"
    code, _, stderr = cli("run", model, name)
    assert code == 1 and "\x1b" not in stderr
    one_error_line(stderr, "evil\\x1bc\\nname.jpg: no such file or folder")


# --- calibration caches -------------------------------------------------------------------------


def _cache_document(**changes):
    doc = {
        "format": FORMAT,
        "method": "entropy",
        "percentile": None,
        "images": 10,
        "graph_sha256": "a" * 64,
        "preprocess_sha256": "b" * 64,
        "tensors": {"x": {"min": -1.0, "max": 2.0, "threshold": 1.5}},
    }
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    "change,message",
    [
        ({"tensors": {"x": {"min": -1, "max": 2, "threshold": -1}}}, "needs threshold > 0"),
        ({"tensors": {"x": {"min": -1, "max": 2, "threshold": float("nan")}}}, "not a finite number"),
        ({"tensors": {"x": {"min": 3, "max": 2, "threshold": 1}}}, "min <= max"),
        ({"tensors": {}}, "tensors must be a non-empty object"),
        ({"method": "magic"}, "method must be one of"),
        ({"images": 0}, "images must be a positive integer"),
        ({"graph_sha256": "nope"}, "graph_sha256 must be a sha256"),
        ({"format": "inception-deploy-calibration/1"}, "expected inception-deploy-calibration/2"),
        ({"extra": 1}, "unknown field 'extra'"),
    ],
)
def test_calibration_cache_content_is_validated(change, message, tmp_path):
    path = tmp_path / "c.calib.json"
    path.write_text(json.dumps(_cache_document(**change)))
    with pytest.raises(InceptionDeployError, match=message) as e:
        CalibrationCache.load(path)
    assert str(e.value).startswith(f"{path}: corrupt calibration cache")
    path.write_text(json.dumps(_cache_document()))
    assert CalibrationCache.load(path).tensors["x"]["threshold"] == 1.5


def test_bad_calibration_cache_is_refused_before_the_export(tmp_path, photo):
    cache = tmp_path / "bad.calib.json"
    cache.write_text("[" * 50_000)
    start = time.perf_counter()
    code, _, stderr = cli(
        "export", "--arch", "v1", "-o", tmp_path / "m.onnx", "--int8", "--calib-cache", cache, "--calib-dir", tmp_path
    )
    assert code == 2 and time.perf_counter() - start < 5  # an export alone takes several seconds
    one_error_line(stderr, str(cache), "nested too deeply")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.calib.json", "photo.jpg"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["-o", "{tmp}/photo.jpg/m.onnx"], "photo.jpg is not a folder"),
        (["-o", "{tmp}"], "is a directory"),
        (["--int8", "--calib-dir", "{tmp}/nowhere"], "no such image folder"),
        (["--int8", "--calib-dir", "{tmp}/empty"], "no images found"),
        (["--num-classes", "1000000000"], "1000000000 is not in the range 1<=x<=100000"),
        (["--input-size", "10"], "arch v1 needs an input of at least 15 pixels, not 10"),
        (["--max-batch", "100000"], "is not in the range 1<=x<=1024"),
    ],
)
def test_export_fails_fast_on_unusable_options(args, message, tmp_path, photo):
    (tmp_path / "empty").mkdir()
    start = time.perf_counter()
    code, _, stderr = cli("export", "--arch", "v1", "-o", tmp_path / "m.onnx", *[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and time.perf_counter() - start < 5
    assert message in stderr and "Traceback" not in stderr
    assert not (tmp_path / "m.onnx").exists()


def test_checkpoint_refused_by_safe_loading_says_why(tmp_path):
    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"fc.weight": Payload()}, evil)
    code, _, stderr = cli("export", "--arch", "v1", "--weights", evil, "-o", tmp_path / "m.onnx")
    assert code == 2
    line = one_error_line(stderr, str(evil), "pickled Python object (posix.system)", "could run code")
    assert "weights_only=False" not in line and "False" not in line and "pwned" not in stderr


def test_write_failure_names_the_destination(tmp_path):
    import errno

    dest = tmp_path / "out.json"
    with pytest.raises(InceptionDeployError, match=f"{dest}: cannot write \\(No space left on device\\)"):
        with atomic_path(dest, PLOT):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InceptionDeployError, match="dev: cannot write"):
        with atomic_path("/dev/full/dev", PLOT) as tmp:
            tmp.write_text("x")


# --- parity ---------------------------------------------------------------------------------------


def test_parity_skips_unreadable_photos_and_runs_each_artifact_on_its_backend(exported, tmp_path):
    v1 = exported("v1").path
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sample_photos()[:3]:
        (photos / p.name).write_bytes(p.read_bytes())
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    engine = tmp_path / "v1.plan"
    engine.write_bytes(b"plan")
    (tmp_path / "v1.plan.json").write_text(exported("v1").metadata.to_json())
    code, stdout, stderr = cli(
        "parity", "--arch", "v1", "--onnx", v1, "--engine", engine, "--images", photos, "--synthetic", "0"
    )
    assert "note: skipped 1 unusable photo(s), e.g. " in stderr and "broken.jpg: not an image" in stderr
    rows = {line.split("|")[1].strip(): line for line in stdout.splitlines() if line.startswith("| ")}
    assert rows[str(v1)].rstrip(" |").endswith("PASS") and "| 3 " in rows[str(v1)]
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert "SKIPPED: " in rows[str(engine)] and "needs TensorRT" in rows[str(engine)]
        assert code == 3


def test_parity_with_no_usable_photo_is_an_error(exported, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"")
    code, _, stderr = cli("parity", "--arch", "v1", "--onnx", exported("v1").path, "--images", tmp_path)
    assert code == 2
    one_error_line(stderr, str(tmp_path), "no usable photo among 1")


# --- fuzzing the readers ---------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=30,
)
_near_valid = st.builds(
    lambda key, value: {**tiny_metadata(), key: value}, st.sampled_from(sorted(tiny_metadata())), _json
)
_near_valid_preprocess = st.builds(
    lambda key, value: {**tiny_metadata(), "preprocess": {**tiny_metadata()["preprocess"], key: value}},
    st.sampled_from(sorted(tiny_metadata()["preprocess"])),
    _json,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json, _near_valid, _near_valid_preprocess))
def test_fuzzed_metadata_loads_or_is_refused_with_our_error(document):
    try:
        meta = validate_metadata(document, "fuzz.onnx")
    except InceptionDeployError as e:
        assert str(e).startswith("fuzz.onnx: ") and "\n" not in printable(e)
        return

    meta.preprocess  # whatever passes validation is usable


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_fuzzed_metadata_text_loads_or_is_refused_with_our_error(text):
    try:
        parse_metadata({"inception_deploy": text}, "fuzz.onnx")
    except InceptionDeployError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        _json,
        st.builds(
            lambda key, value: {**_cache_document(), key: value}, st.sampled_from(sorted(_cache_document())), _json
        ),
    )
)
def test_fuzzed_calibration_cache_loads_or_is_refused_with_our_error(tmp_path, document):
    path = tmp_path / "fuzz.calib.json"
    path.write_text(json.dumps(document))
    try:
        cache = CalibrationCache.load(path)
    except InceptionDeployError as e:
        assert str(e).startswith(str(path))
        return
    assert all(np.isfinite(t["threshold"]) and t["threshold"] > 0 for t in cache.tensors.values())


# --- signals ---------------------------------------------------------------------------------------


def _command(name: str, *args, tmpdir: Path) -> subprocess.Popen:
    code = f"from inception_deploy.cli import {name}_main; {name}_main()"
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(condition, process, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"process ended before the signal: {process.communicate()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("the condition never held")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_mid_export_leaves_nothing_behind(signum, tmp_path):
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    out.mkdir()
    scratch.mkdir()
    previous = tiny_classifier(out / "m.onnx").read_bytes()  # an earlier export: the toolkit's to replace
    process = _command("export", "--arch", "v1", "-o", out / "m.onnx", tmpdir=scratch)
    _wait_for(lambda: any(p.name.endswith(".tmp") for p in out.iterdir()), process)  # the export is writing
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum
    assert (
        stderr.strip().splitlines()[-1]
        == (f"error: interrupted by {signal.Signals(signum).name}; nothing was left half-written")
        and "Traceback" not in stderr
    )
    assert [p.name for p in out.iterdir()] == ["m.onnx"] and (out / "m.onnx").read_bytes() == previous
    assert _ours(scratch) == []


@pytest.mark.slow
def test_sigterm_mid_calibration_leaves_nothing_behind(exported, tmp_path):
    images, scratch = tmp_path / "images", tmp_path / "scratch"
    images.mkdir()
    scratch.mkdir()
    for i in range(300):
        Image.fromarray(np.full((64, 64, 3), i % 255, np.uint8)).save(images / f"{i:03d}.png")
    model = tmp_path / "v1.onnx"
    model.write_bytes(exported("v1").path.read_bytes())
    process = _command("calibrate", model, "--calib-dir", images, "-o", tmp_path / "v1.calib.json", tmpdir=scratch)
    _wait_for(lambda: any(scratch.glob("inception-calib-*/prepared.onnx")), process)
    time.sleep(1.0)  # into the calibration loop
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "scratch", "v1.onnx"]
    assert _ours(scratch) == []


def _ours(tmpdir: Path) -> list:
    """The toolkit's temporary folders left in ``tmpdir`` (torch and ONNX Runtime keep caches
    and session files of their own there)."""
    return [p for p in tmpdir.iterdir() if p.name.startswith("inception-")]


def test_input_error_entries_keep_their_place():
    sources = expand_inputs(["/definitely/missing.jpg", str(sample_photos()[0])])
    assert sources[0] == InputError("/definitely/missing.jpg", "no such file or folder")
    assert sources[1] == str(sample_photos()[0])


def test_a_list_file_is_read_as_its_inputs_are_asked_for(tmp_path):
    """issue 45: the first inputs of a list of 200,000 lines come out without the list being read
    whole (which holds tens of MB of names); a line that is not UTF-8 or names nothing is one
    error in its place, the lines after it still read."""
    import tracemalloc

    photo = str(sample_photos()[0])
    listing = tmp_path / "many.txt"
    with open(listing, "wb") as f:
        f.write(b"".join(photo.encode() + b"\n" for _ in range(100_000)))
        f.write(b"caf\xe9.jpg\n/definitely/missing.jpg\n")
        f.write(b"".join(photo.encode() + b"\n" for _ in range(100_000)))
    tracemalloc.start()
    try:
        from inception_deploy.inputs import iter_inputs

        stream = iter_inputs([str(listing)])
        first = [next(stream) for _ in range(10)]
        held = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert first == [photo] * 10
    assert held < 2**20, f"{held / 2**20:.1f} MB held for the first 10 of 200,002 inputs"
    rest = list(stream)
    errors = [s for s in rest if isinstance(s, InputError)]
    assert len(rest) == 200_002 - 10 and len(errors) == 2
    assert errors[0] == InputError(
        os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")), "no such file or folder"
    )
    assert errors[1] == InputError("/definitely/missing.jpg", "no such file or folder")


def test_a_list_that_grows_while_it_is_read_is_read_to_where_it_then_ends(tmp_path):
    from inception_deploy.inputs import iter_inputs

    listing = tmp_path / "growing.txt"
    listing.write_text("a.jpg\nb.jpg\n")
    stream = iter_inputs([str(listing)])
    assert next(stream) == InputError(str(tmp_path / "a.jpg"), "no such file or folder")
    with open(listing, "a") as f:
        f.write("c.jpg\n")
    assert [s.name for s in stream] == [str(tmp_path / "b.jpg"), str(tmp_path / "c.jpg")]


def test_a_folder_is_walked_in_the_order_it_was_listed_before(tmp_path):
    """Streaming a folder keeps scan_folder's order (sorted paths): a subfolder's files where its
    name falls among the files beside it, not after them."""
    from inception_deploy.inputs import scan_folder

    for name in ("b.png", "a/z.png", "a/b/c.png", "c/a.png", "0.png", "a.png", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    files, problems = scan_folder(tmp_path)
    assert problems == []
    assert files == sorted(p for p in tmp_path.rglob("*.png"))
    assert expand_inputs([str(tmp_path)]) == [str(p) for p in files]


def test_calibration_cache_key_is_the_graph_not_the_metadata(v1_opset17, tmp_path):
    """An export without a parity report has other metadata, the same graph: its cache stays valid."""
    from inception_deploy.calibration.cache import graph_digest
    from inception_deploy.export import export_onnx
    from inception_deploy.fileio import sha256_file
    from inception_deploy.graph import load_onnx

    with_parity = export_onnx("v1", tmp_path / "v1.onnx", opset=17).path
    without = v1_opset17
    assert sha256_file(with_parity) != sha256_file(without)
    assert graph_digest(load_onnx(with_parity)) == graph_digest(load_onnx(without))
