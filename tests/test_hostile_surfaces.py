"""Hostile input on the newer surfaces (Keras files, labelled sets, Triton repositories and
clients, full disks, signals, a base install without torch), each through the real command:
one line naming the culprit, the right exit code, nothing replaced or half-written."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import h5py
import pytest
import torch
from hostile import cli, one_error_line, tiny_classifier

from inception_deploy.inputs import sample_photos


def _script(code: str, *args, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs
    )


@contextlib.contextmanager
def _tiny_disk(folder: Path, size: str, options: str = ""):
    """A tmpfs of ``size`` at ``folder``: a full (or with "ro", read-only) disk, which even root
    cannot write (mounting needs root: skips elsewhere)."""
    folder.mkdir()
    mount_options = f"size={size}" + (f",{options}" if options else "")
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", mount_options, "tmpfs", str(folder)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def tiny(tmp_path):
    return tiny_classifier(tmp_path / "tiny.onnx")


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(sample_photos()[0].read_bytes())
    return path


# --- 1. nothing of the user's is replaced ------------------------------------------------------


def test_force_never_empties_a_folder_that_is_not_a_repository(tiny, tmp_path):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years of work")
    code, _, stderr = cli("triton", tiny, "-o", folder, "--force")
    assert code == 2
    one_error_line(stderr, str(folder), "not a Triton model repository", "thesis.txt")
    assert (folder / "thesis.txt").read_text() == "years of work"
    # a repository this tool wrote is replaced by --force, and a non-empty one without it is refused
    repository = tmp_path / "repository"
    assert cli("triton", tiny, "-o", repository)[0] == 0
    assert cli("triton", tiny, "-o", repository)[0] == 2
    code, _, stderr = cli("triton", tiny, "-o", repository, "--force")
    assert code == 0, stderr
    assert (repository / "tiny" / "config.pbtxt").is_file()


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_outputs_never_replace_what_is_not_a_regular_file(kind, tiny, photo, tmp_path):
    target = {"fifo": tmp_path / "pipe", "folder": tmp_path / "folder", "device": Path("/dev/null")}[kind]
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    for args in (
        ["eval", "--data", tmp_path / "labels.csv", "--onnx", tiny, "--json", target],
        ["bench", tiny, "--batch-sizes", "1", "--iterations", "1", "--json", target],
        ["calibrate", tiny, "--calib-samples", "-o", target],
    ):
        (tmp_path / "labels.csv").write_text(f"{photo.name},class 0\n")
        code, _, stderr = cli(*args)
        assert code == 2 and "Traceback" not in stderr, (args, stderr)
        if kind != "folder":  # click's own option check refuses a folder (a usage error)
            one_error_line(stderr, str(target), "not a regular file")
    assert {"fifo": target.is_fifo, "folder": target.is_dir, "device": target.is_char_device}[kind]()
    code, _, stderr = cli("triton", tiny, "-o", tmp_path / "labels.csv", "--force")  # click refuses a file
    assert code == 2 and (tmp_path / "labels.csv").read_text().startswith(photo.name)


def test_outputs_never_replace_an_input_or_a_file_the_toolkit_did_not_write(tiny, photo, tmp_path):
    """--json, --plot and the precision file: an input of the same command, a user's JSON or PNG
    is refused in one line and left as it was; what the command wrote before is replaced."""
    notes, picture = tmp_path / "notes.json", tmp_path / "picture.png"
    notes.write_text('{"config": "important", "keep": true}')
    picture.write_bytes(photo.read_bytes())  # a JPEG under a PNG name: a user's picture all the same
    labels = tmp_path / "labels.csv"
    labels.write_text(f"{photo.name},class 0\n")
    bench = ["bench", tiny, "--batch-sizes", "1", "--iterations", "1", "--warmup", "0"]
    evaluate = ["eval", "--data", labels, "--onnx", tiny]
    for args, target, message in (
        (bench + ["--json", tiny], tiny, "is also an input of this command"),
        (bench + ["--json", notes], notes, "is not a result list of inception-bench"),
        (bench + ["--plot", picture], picture, "is not a plot of inception-deploy"),
        (evaluate + ["--json", labels], labels, "is also an input of this command"),
        (evaluate + ["--json", notes], notes, "is not an evaluation report of inception-eval"),
    ):
        before = target.read_bytes()
        code, _, stderr = cli(*args)
        assert code == 2, (args, stderr)
        one_error_line(stderr, str(target), message, "refusing")
        assert target.read_bytes() == before
    # the command's own earlier output is replaced
    report = tmp_path / "report.json"
    assert cli(*evaluate, "--json", report)[0] == 0
    report.write_text(report.read_text().replace('"images": 1', '"images": 1 '))
    code, _, stderr = cli(*evaluate, "--json", report)
    assert code == 0, stderr
    assert json.loads(report.read_text())["images"] == 1 and '"images": 1 ' not in report.read_text()


def test_layerwise_outputs_never_replace_the_models_they_compare(v1_opset17, tmp_path):
    """The data loss of issue 42: --save-outputs naming the FP32 model replaced it with JSON."""
    from inception_deploy.export.precision import quantize_int8
    from inception_deploy.inputs import sample_folder

    fp32 = tmp_path / "v1.onnx"
    fp32.write_bytes(v1_opset17.read_bytes())
    int8 = quantize_int8(fp32, tmp_path / "int8.onnx", target="tensorrt", calib_dir=sample_folder(), method="minmax")
    before = fp32.read_bytes()
    code, _, stderr = cli(
        "parity", "--arch", "v1", "--onnx", fp32, "--onnx", int8.path, "--layerwise", "--save-outputs", fp32
    )
    assert code == 2
    one_error_line(stderr, str(fp32), "is also an input of this command")
    assert fp32.read_bytes() == before
    code, _, stderr = cli(
        "parity",
        "--arch",
        "v1",
        "--onnx",
        fp32,
        "--layerwise",
        "--onnx",
        int8.path,
        "--save-outputs",
        int8.path.with_name("int8.precision.json"),
    )
    assert code == 2
    one_error_line(stderr, "int8.precision.json", "is not a Polygraphy RunResults file")


# --- 2. values no trained network has ------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda state: state["fc.weight"].view(-1).__setitem__(7, float("nan")), "fc.weight holds 1 non-finite"),
        (lambda state: state["conv1.bn.bias"].__setitem__(0, float("inf")), "conv1.bn.bias holds 1 non-finite"),
        (lambda state: state["conv1.bn.running_var"].__setitem__(3, -0.5), "conv1.bn.running_var holds a negative"),
    ],
)
def test_checkpoints_with_impossible_values_are_refused(fmt, damage, message, built_models, tmp_path):
    state = {k: v.clone() for k, v in built_models("v1").state_dict().items() if not k.startswith("aux")}
    damage(state)
    path = tmp_path / f"v1.{fmt}"
    if fmt == "pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    code, _, stderr = cli("export", "--arch", "v1", "--weights", path, "-o", tmp_path / "v1.onnx")
    assert code == 2
    one_error_line(stderr, str(path), message)
    assert not (tmp_path / "v1.onnx").exists()


# --- 3, 4, 5. Keras files ------------------------------------------------------------------------


def _keras3(path, build):
    with h5py.File(path, "w") as f:
        build(f)
    return path


def _export_keras(path, tmp_path):
    code, _, stderr = cli("export", "--arch", "v3", "--weights", path, "-o", tmp_path / "o.onnx")
    assert code == 2 and not (tmp_path / "o.onnx").exists()
    return one_error_line(stderr, str(path))


def test_hdf5_groups_linking_to_themselves_or_into_a_huge_graph_are_walked_once(tmp_path):
    def loop(f):
        model = f.create_group("layers/functional")
        model["layers"] = f["layers"]  # its own parent: a cycle

    assert "no Dense classifier" in _export_keras(_keras3(tmp_path / "loop.weights.h5", loop), tmp_path)

    def diamonds(f):  # 2**40 paths through 41 groups
        groups = [f.create_group(f"layers/functional/g{i}") for i in range(41)]
        for upper, lower in zip(groups, groups[1:]):
            upper["a"], upper["b"] = lower, lower

    start = time.monotonic()
    assert "no Dense classifier" in _export_keras(_keras3(tmp_path / "dag.weights.h5", diamonds), tmp_path)
    assert time.monotonic() - start < 120  # not 2**40 visits


def test_missing_groups_and_folders_are_named_as_such(tmp_path):
    legacy = _keras3(tmp_path / "legacy.h5", lambda f: f.attrs.__setitem__("layer_names", [b"conv2d"]))
    assert "has no /conv2d" in _export_keras(legacy, tmp_path)
    folder = tmp_path / "model.keras"
    folder.mkdir()
    assert "is a folder, not a checkpoint file" in _export_keras(folder, tmp_path)


def _patch_compression(path: Path, method: int) -> None:
    """Rewrite a stored member's compression method in both zip headers (to one zipfile lacks)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model.weights.h5")
    data[info.header_offset + 8 : info.header_offset + 10] = method.to_bytes(2, "little")
    central = data.index(b"PK\x01\x02")
    data[central + 10 : central + 12] = method.to_bytes(2, "little")
    path.write_bytes(bytes(data))


def test_keras_members_that_cannot_be_inflated_fail_in_one_line(tmp_path):
    weights = _keras3(tmp_path / "w.weights.h5", lambda f: f.create_group("layers"))
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(weights, "model.weights.h5")
    _patch_compression(path, 97)  # WavPack
    assert "cannot read model.weights.h5 from the archive" in _export_keras(path, tmp_path)


def test_a_keras_decompression_bomb_is_stopped_at_the_networks_size(tmp_path):
    """2 MB inflating to 1.5 GB: refused once it passes what v3's weights can take, with the
    process's peak memory far below the inflated size."""
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("model.weights.h5", "w", force_zip64=True) as member:
            zeros = bytes(1 << 24)
            for _ in range(96):
                member.write(zeros)
    assert path.stat().st_size < 4e6
    # VmHWM: this process's own peak (ru_maxrss would include the forked test runner's size)
    code = (
        "import re, sys\nfrom inception_deploy.cli import export_main\nsys.argv = ['inception-export', "
        "'--arch', 'v3', '--weights', sys.argv[1], '-o', sys.argv[2]]\ntry:\n    export_main()\nexcept "
        "SystemExit as e:\n    status = open('/proc/self/status').read()\n"
        "    print(re.search(r'VmHWM:\\s+(\\d+)', status).group(1), e.code)"
    )
    run = _script(code, path, tmp_path / "o.onnx")
    peak_kib, exit_code = map(int, run.stdout.split())
    assert exit_code == 2, run.stderr
    one_error_line(run.stderr, str(path), "more than this network's weights can take")
    assert peak_kib < 1.2e6, peak_kib  # the inflated member would be 1.6 GB (twice, before)


# --- 3, 5. labelled sets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rows, message",
    [
        ("photo.jpg,²\n", "class '²' is not one of the model's"),
        ("photo.jpg," + "x" * 200_000 + "\n", "not a readable CSV row"),
        ("photo.jpg,0\nphoto.jpg,1\n", "labelled '1' here and '0' on line 1"),
    ],
)
def test_labelled_sets_that_cannot_be_read_as_given(rows, message, tiny, photo, tmp_path):
    table = tmp_path / "labels.csv"
    table.write_text(rows)
    code, _, stderr = cli("eval", "--data", table, "--onnx", tiny)
    assert code == 2
    one_error_line(stderr, str(table), message)


def test_eval_exits_1_when_an_image_is_unreadable_and_counts_a_repeated_image_once(tiny, photo, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    table = tmp_path / "labels.csv"
    table.write_text("photo.jpg,0\nbroken.jpg,1\nphoto.jpg,0\n")
    code, stdout, stderr = cli("eval", "--data", table, "--onnx", tiny, "--no-progress")
    assert code == 1, stderr  # as inception-run: the unreadable image is reported, the others counted
    assert "1 unreadable images skipped" in stderr and "listed more than once" in stderr
    assert f"{table}: 1 images" in stdout


# --- 3, 5. full disks ----------------------------------------------------------------------------


def test_a_full_disk_names_the_destination(tiny, tmp_path):
    with _tiny_disk(tmp_path / "disk", "8k") as disk:
        code, _, stderr = cli("triton", tiny, "-o", disk / "repository")
        assert code == 2
        one_error_line(stderr, str(disk / "repository"), "No space left on device")
        assert list(disk.iterdir()) == []
        code, _, stderr = cli("export", "--arch", "v1", "-o", disk / "v1.onnx", "--no-parity")
        assert code == 2
        one_error_line(stderr, f"{disk / 'v1.onnx'}: cannot write (No space left on device)")
        assert "torch.onnx" not in stderr and list(disk.iterdir()) == []


def test_an_unwritable_parent_is_named_not_a_probe_file(tiny, tmp_path):
    with _tiny_disk(tmp_path / "readonly", "8k", "ro") as disk:
        code, _, stderr = cli("triton", tiny, "-o", disk / "repository")
        assert code == 2
        line = one_error_line(stderr, f"{disk / 'repository'}: cannot write there (Read-only file system)")
        assert "probe" not in line
    (tmp_path / "file.txt").write_text("a file, not a folder")
    code, _, stderr = cli("triton", tiny, "-o", tmp_path / "file.txt" / "repository")
    assert code == 2
    assert "probe" not in one_error_line(stderr, str(tmp_path / "file.txt" / "repository"), "file.txt is not a folder")


def test_a_full_stdout_is_one_line(tiny, photo):
    with open("/dev/full", "w") as full:
        code = "import sys\nfrom inception_deploy.cli import run_main\nsys.argv[0] = 'inception-run'\nrun_main()"
        run = subprocess.run(
            [sys.executable, "-c", code, str(tiny), str(photo), "--json"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert run.returncode == 2
    one_error_line(run.stderr, "standard output: cannot write (No space left on device)")
    assert "Exception ignored" not in run.stderr


# --- 3. a Triton server answering garbage ----------------------------------------------------------


class _TruncatingServer(http.server.BaseHTTPRequestHandler):
    """Answers like Triton's HTTP API until a JSON body, which it cuts in half (status 200)."""

    metadata = {
        "name": "m_pipeline",
        "inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1, 1]}],
        "outputs": [{"name": "PROBABILITIES", "datatype": "FP32", "shape": [-1, 3]}],
    }
    truncate_index = True

    def _send(self, body: bytes):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.endswith("/ready"):
            return self._send(b"")
        return self._send(json.dumps(self.metadata).encode())

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/repository/index"):
            body = json.dumps([{"name": "m_pipeline", "state": "READY"}]).encode()
            return self._send(body[: len(body) // 2] if self.truncate_index else body)
        return self._send(b'{"model_name": "m_pipeline", "outputs": [{"name": "PROB')

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("truncate_index", [True, False])
def test_a_server_answering_truncated_json(truncate_index, photo, tmp_path):
    pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
    handler = type("Handler", (_TruncatingServer,), {"truncate_index": truncate_index})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        code, stdout, stderr = cli("run", "--server", url, photo, photo, "--no-progress")
    finally:
        server.shutdown()
    assert "Traceback" not in stderr
    if truncate_index:  # nothing could be asked: the server is named
        assert code == 2
        one_error_line(stderr, url, "cannot read the server's model index")
    else:  # each image's answer is unreadable: each named, exit 1
        assert code == 1
        assert stderr.count("unreadable answer from the server") == 2 and str(photo) in stderr


# --- 5. batch sizes ------------------------------------------------------------------------------


def test_batch_sizes_beyond_a_model_or_the_toolkit_are_refused_before_allocating(tiny, tmp_path):
    code, _, stderr = cli("bench", tiny, "--batch-sizes", "100000")
    assert code == 2
    one_error_line(stderr, "--batch-sizes needs sizes from 1 to 1024")
    code, _, stderr = cli("bench", tiny, "--batch-sizes", "9", "--iterations", "1", "--warmup", "0")
    assert code == 2
    one_error_line(stderr, str(tiny), "takes batches up to 8, not 9")
    code, _, stderr = cli("export", "--arch", "v1", "--batch", "1024", "--max-batch", "1", "-o", tmp_path / "a.onnx")
    assert code == 2
    one_error_line(stderr, "--batch 1024 fixes the batch size and --max-batch 1 bounds a dynamic one")


# --- 6. a signal landing in a finalizer ------------------------------------------------------------


def test_a_signal_landing_in_a_finalizer_still_interrupts_without_a_traceback(tmp_path):
    """Python swallows an exception raised in __del__ and prints its traceback: a signal that
    arrives there must still unwind the command, with the one interrupted line."""
    marker = tmp_path / "in_finalizer"
    code = f"""
import gc, pathlib, sys, time
import click
from inception_deploy.cli.guard import one_line_errors

class Slow:
    def __del__(self):
        pathlib.Path({str(marker)!r}).touch()
        time.sleep(3)   # the signal lands here

@click.command()
@one_line_errors
def work():
    Slow()
    gc.collect()
    for _ in range(3000):  # work in Python: a signal pending before a long C call would wait for it to end
        time.sleep(0.01)
    print("finished")

work()
"""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, (stdout, stderr)
    assert "finished" not in stdout and "Traceback" not in stderr and "Exception ignored" not in stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted by SIGTERM; nothing was left half-written"


@contextlib.contextmanager
def _trickling_server():
    """A loopback HTTP server that answers with a byte a second, for ever; yields its URL."""

    class Trickle(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(600):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(1)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/photo.jpg"
    finally:
        server.shutdown()


def test_a_nul_byte_in_a_listed_name_is_that_inputs_error(tiny, photo, tmp_path):
    listing = tmp_path / "inputs.txt"
    listing.write_bytes(f"{photo.name}\nbad\0name.jpg\n".encode())
    code, stdout, stderr = cli("run", tiny, listing, "--json")
    assert code == 1 and "Traceback" not in stderr, stderr
    assert "bad\\0name.jpg: a file name cannot hold a NUL byte" in stderr
    assert [json.loads(line)["file"] for line in stdout.splitlines()][0] == str(photo)


def test_a_trickling_download_has_a_deadline_and_ctrl_c_ends_the_command_at_once(tiny):
    from inception_deploy.inputs import fetch_uri

    with _trickling_server() as url:
        start = time.monotonic()
        with pytest.raises(OSError, match="no complete answer within 2 s"):
            fetch_uri(url, deadline=2)
        assert time.monotonic() - start < 4
        run = [str(Path(sys.executable).with_name("inception-run")), str(tiny), url, url, url, "--no-progress"]
        process = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)  # the downloads have begun
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        _, stderr = process.communicate(timeout=60)
        assert time.monotonic() - interrupted < 2, stderr
        assert process.returncode == 128 + signal.SIGINT and "Traceback" not in stderr, stderr


# --- 7. the base install --------------------------------------------------------------------------

EXPORT_EXTRA = ("torch", "onnx", "onnxscript", "safetensors", "h5py", "polygraphy")  # absent in a base install


@pytest.mark.parametrize(
    "command, args",
    [
        ("export", ["--arch", "v1"]),
        ("parity", ["--arch", "v1", "--onnx", "x.onnx"]),
        ("calibrate", ["x.onnx", "--calib-samples"]),
        ("eval", ["--arch", "v1", "--data", "."]),
    ],
)
def test_commands_needing_torch_say_which_extra_installs_it(command, args, tmp_path):
    """As in a base install (none of the export extra's packages): one line with the extra, exit 2."""
    tiny_classifier(tmp_path / "x.onnx")
    code = (
        f"import sys\nsys.modules.update(dict.fromkeys({EXPORT_EXTRA!r}))\n"
        f"from inception_deploy.cli import {command}_main\n"
        f"sys.argv = ['inception-{command}'] + sys.argv[1:]\n{command}_main()"
    )
    run = _script(code, *args, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    one_error_line(run.stderr, f"inception-{command} needs ", "pip install ", "inception-deploy[export]")


def test_openvino_needs_only_onnx_beside_it_and_the_hint_names_the_smallest_fix(tmp_path):
    """issue 42: with the openvino extra but no onnx, --device openvino said to install the export
    extra (torch, several GB); the openvino extra now carries onnx, and the hint names onnx alone."""
    pytest.importorskip("openvino")
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert any(req.startswith("onnx>") for req in project["optional-dependencies"]["openvino"])
    tiny = tiny_classifier(tmp_path / "tiny.onnx")
    code = (
        "import sys\nsys.modules['onnx'] = None\nfrom inception_deploy.cli import run_main\n"
        "sys.argv = ['inception-run'] + sys.argv[1:]\nrun_main()"
    )
    run = _script(code, tiny, "--samples", "--device", "openvino")
    assert run.returncode == 2, run.stderr
    line = one_error_line(run.stderr, "inception-run needs onnx: pip install onnx")
    assert "torch" not in line


def test_running_an_onnx_model_needs_no_extra(tmp_path):
    """The base install's promise: inception-run works with none of the extras' packages."""
    tiny = tiny_classifier(tmp_path / "tiny.onnx")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(sample_photos()[0].read_bytes())
    extras = EXPORT_EXTRA + ("openvino", "tritonclient", "matplotlib", "tensorrt", "h5py")
    code = (
        f"import sys\nsys.modules.update(dict.fromkeys({extras!r}))\nfrom inception_deploy.cli import run_main\n"
        f"sys.argv = ['inception-run'] + sys.argv[1:]\nrun_main()"
    )
    run = _script(code, tiny, photo, "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["labels"][0].startswith("class ")


# --- 16. what an artifact tells about where it was built -----------------------------------------


def test_exported_files_keep_module_names_and_drop_stack_traces(exported):
    import onnx

    path = exported("v1").path
    model = onnx.load(str(path))
    keys = {entry.key for node in model.graph.node for entry in node.metadata_props}
    assert keys == {"pkg.torch.onnx.name_scopes"}
    scopes = [json.loads(e.value.replace("'", '"')) for n in model.graph.node for e in n.metadata_props]
    assert any("inception3a.branch1" in s for s in scopes)  # the module paths the INT8 budget needs
    source_folder = str(Path(__file__).resolve().parents[1]).encode()
    assert source_folder not in path.read_bytes() and b"stack_trace" not in path.read_bytes()


# --- 11. no silent stretches ---------------------------------------------------------------------


def test_parity_announces_each_step(exported):
    code, stdout, stderr = cli("parity", "--arch", "v1", "--onnx", exported("v1").path, "--synthetic", "0")
    assert code == 0, stderr
    assert "building v1 with random weights as the eager reference..." in stderr
    assert f"running eager PyTorch and {exported('v1').path} (" in stderr and "PASS" in stdout
