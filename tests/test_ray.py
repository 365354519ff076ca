"""Batch classification and evaluation on Ray (the ray extra) against a real Ray head started on
127.0.0.1 for this module: rows against a local run, bad inputs, an interrupted run resumed, a
killed worker, Parquet, evaluation, and the one-line errors before any Ray work."""

import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
psutil = pytest.importorskip("psutil", reason="psutil comes with ray")

from ray_head import ray_head  # noqa: E402

from inception_deploy.cli.run import run_command  # noqa: E402
from inception_deploy.runtime.predictor import Predictor  # noqa: E402

BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def head():
    """A Ray head of this module's own on 127.0.0.1, stopped by process id after it."""
    with ray_head() as address:
        yield address


@pytest.fixture(scope="module")
def images(trained, tmp_path_factory):
    """Learnable PNGs of the trained classifier's classes, as a folder and a list file, with an
    unreadable file among them."""
    import trained_classifier as tc

    folder = tc.write_images(tmp_path_factory.mktemp("ray") / "images", 24, seed=7)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def _cli(*args, **kwargs):
    return subprocess.run(
        [os.path.join(BIN, "inception-run"), *map(str, args), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def _rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_rows_match_a_local_run_input_for_input(trained, images, head, tmp_path):
    """Folders, a list file (relative paths, comments, a URI served on loopback), a missing file
    and a broken image: one row per input, the same top-5 as the in-process Predictor, the same
    errors, exit 1."""
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    server = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: SimpleHTTPRequestHandler(*a, directory=str(images)))
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"# photos to tag\n{images.name}/000.png\n\n{url}/001.png\n{url}/gone.png\n")
    shutil.copytree(images, tmp_path / images.name)
    output = tmp_path / "out.jsonl"
    try:
        done = _cli(
            trained["fp32"],
            images,
            listing,
            tmp_path / "missing.png",
            "--ray",
            "--ray-address",
            head,
            "--output",
            output,
            "--workers",
            "2",
            "--topk",
            "3",
        )
    finally:
        server.shutdown()
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "3 of 29 inputs failed" in done.stderr
    rows = _rows(output)
    assert len(rows) == 29
    by_file = collections.defaultdict(list)
    for row in rows:
        by_file[row["file"]].append(row)
    local_sources = [str(p) for p in sorted(images.iterdir())] + [str(tmp_path / images.name / "000.png")]
    local = Predictor(trained["fp32"]).predict(local_sources, topk=3)
    for expected in local:
        (row,) = by_file[expected.file]
        if expected.error is not None:
            assert row == {"file": expected.file, "error": expected.error}
        else:
            assert row["indices"] == expected.indices and row["labels"] == expected.labels
            np.testing.assert_allclose(row["probabilities"], expected.probabilities, rtol=1e-5)
    (fetched,) = by_file[f"{url}/001.png"]
    assert fetched["indices"] == next(p.indices for p in local if p.file.endswith("001.png"))
    assert by_file[f"{url}/gone.png"][0]["error"].startswith("cannot fetch: HTTP Error 404")
    assert by_file[str(tmp_path / "missing.png")][0]["error"] == "no such file or folder"


def _listing(images, tmp_path, copies: int):
    """A list file naming every readable image ``copies`` times: a run long enough to interrupt."""
    names = [p.name for p in sorted(images.glob("0*.png"))]
    path = tmp_path / "many.txt"
    path.write_text("".join(f"{images}/{name}\n" for _ in range(copies) for name in names))
    return path, len(names) * copies


def _wait_for_rows(path, count, process, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return True
        time.sleep(0.05)
    return False


def _interrupted(command, output, signum):
    """``command`` stopped by ``signum`` once it has written 20 rows; its exit code and stderr."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for_rows(output, 20, process), "the run ended before it could be interrupted"
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stderr


def test_an_interrupted_run_keeps_whole_rows_and_resumes_to_one_row_per_input(trained, images, head, tmp_path):
    listing, total = _listing(images, tmp_path, copies=25)
    output = tmp_path / "out.jsonl"
    command = [os.path.join(BIN, "inception-run"), str(trained["fp32"]), str(listing), "--ray", "--ray-address", head]
    command += ["--output", str(output), "--batch-size", "2", "--no-progress"]
    code, stderr = _interrupted(command, output, signal.SIGINT)
    assert code == 130 and "--resume goes on" in stderr, stderr
    data = output.read_bytes()
    assert data.endswith(b"\n")
    kept = _rows(output)
    assert 20 <= len(kept) < total

    with open(output, "ab") as f:  # as if a hard kill had cut the last row short
        f.write(b'{"file": "half a ro')
    refused = _cli(trained["fp32"], listing, "--ray", "--ray-address", head, "--output", output)
    assert refused.returncode == 2 and "exists; --resume continues it" in refused.stderr
    resumed = _cli(trained["fp32"], listing, "--ray", "--ray-address", head, "--output", output, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(kept)} inputs already had a row" in resumed.stderr
    assert "removed an incomplete last row" in resumed.stderr
    rows = _rows(output)
    assert rows[: len(kept)] == kept
    assert collections.Counter(r["file"] for r in rows) == collections.Counter(
        line for line in listing.read_text().splitlines()
    )


def test_sigterm_on_a_local_ray_stops_the_run_as_ctrl_c_does(trained, images, tmp_path):
    """ray.init takes SIGTERM over (a local Ray would exit 1, as if inputs had failed): the
    command's own handling comes back, so SIGTERM is exit 143 with whole rows."""
    listing, total = _listing(images, tmp_path, copies=25)
    output = tmp_path / "out.jsonl"
    before = _ours_in_tmp()
    command = [os.path.join(BIN, "inception-run"), str(trained["fp32"]), str(listing), "--ray", "--output", str(output)]
    code, stderr = _interrupted(command + ["--batch-size", "2", "--no-progress"], output, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM and "interrupted by SIGTERM" in stderr, stderr
    assert output.read_bytes().endswith(b"\n") and 20 <= len(_rows(output)) < total
    assert _ours_in_tmp() <= before  # Ray's session folder and the model copies are gone too


def test_ctrl_c_while_the_workers_load_leaves_no_model_copy_behind(trained, images, tmp_path):
    """issue 42: inception-ray-* copies of the model stayed in the temporary folder after SIGINT.
    No file stays; a Ray worker that was starting as Ray stopped may make its empty session folder
    again after the run removed it (about one run in four here), which the next run removes."""
    from inception_deploy.batch.session import _remove_what_killed_runs_left

    before = _ours_in_tmp()
    output = tmp_path / "out.jsonl"
    command = [os.path.join(BIN, "inception-run"), str(trained["fp32"]), str(images), "--ray", "--output", str(output)]
    process = subprocess.Popen(command + ["--no-progress"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (_ours_in_tmp() - before) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)  # the run's scratch folder: Ray is starting, the workers will load there
        time.sleep(3)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGINT, stderr
    left = [Path("/tmp", name) for name in _ours_in_tmp() - before]
    assert not [f for path in left for f in path.rglob("*") if not f.is_dir()], "a file was left behind"
    _remove_what_killed_runs_left()  # what the next run does first
    assert _ours_in_tmp() <= before


def test_workers_are_capped_by_the_batches_and_the_cpus_there_are(trained, images, head, tmp_path):
    output = tmp_path / "out.jsonl"
    done = _cli(trained["fp32"], images, "--ray", "--ray-address", head, "--output", output, "--workers", "1000")
    assert done.returncode == 1, done.stderr  # broken.png
    assert "note: 2 workers, not 1000: the cluster has CPUs for 2" in done.stderr
    few = _cli(
        trained["fp32"],
        images / "000.png",
        "--ray",
        "--ray-address",
        head,
        "--output",
        tmp_path / "few.jsonl",
        "--workers",
        "1000",
    )
    assert few.returncode == 0 and "note: 1 worker, not 1000: 1 inputs make 1 batches" in few.stderr, few.stderr


def test_a_killed_worker_is_replaced_and_no_row_is_lost_or_doubled(trained, images, head, tmp_path):
    listing, total = _listing(images, tmp_path, copies=25)
    output = tmp_path / "out.jsonl"
    command = [os.path.join(BIN, "inception-run"), str(trained["fp32"]), str(listing), "--ray", "--ray-address", head]
    command += ["--output", str(output), "--batch-size", "2", "--no-progress"]
    started = time.time()
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert _wait_for_rows(output, 20, process), "the run ended before a worker could be killed"
        workers = [  # this job's actors, not an earlier test's
            p
            for p in psutil.process_iter(["cmdline", "create_time"])
            if "ray::_Classifier" in " ".join(p.info["cmdline"] or []) and p.info["create_time"] >= started - 1
        ]
        assert workers, "no actor process of this run found"
        workers[0].kill()
        rows_at_kill = output.read_bytes().count(b"\n")
        _, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    assert rows_at_kill < total, "the run finished before the kill: the test proves nothing"
    assert process.returncode == 0, stderr
    rows = _rows(output)
    assert len(rows) == total and all("error" not in r for r in rows)
    assert collections.Counter(r["file"] for r in rows) == collections.Counter(listing.read_text().splitlines())


def test_resuming_matches_rows_to_inputs_by_count_and_absolute_path(tmp_path, monkeypatch):
    """What --resume skips: as many mentions of an input as it has rows (an input named twice needs
    two rows), ``a.jpg`` and ``./a.jpg`` one input, URIs as written."""
    from inception_deploy.batch.writers import Done

    monkeypatch.chdir(tmp_path)
    done = Done(["a.jpg", f"{tmp_path}/b.jpg", "http://host/a.jpg"])
    asked = ["./a.jpg", "a.jpg", "b.jpg", "b.jpg", "http://host/a.jpg", "http://host/./a.jpg", "c.jpg"]
    assert [done.take(name) for name in asked] == [True, False, True, False, True, False, False]
    assert Done().take("a.jpg") is False


def test_a_worker_that_cannot_start_ends_the_job_and_a_batch_that_kills_workers_is_given_up(monkeypatch):
    """A model its worker cannot load (a node without the GPU or the package): the constructor's
    error, not a hang nor Ray's traceback. A batch that kills every worker running it: its
    inputs given up after three deaths, the other batches done (it was sent again for ever)."""
    import tempfile

    from inception_deploy.batch.session import RayOptions, pool_map, ray_reason

    class Unloadable:
        def __init__(self):
            raise ValueError("model.onnx: this worker has no CUDA")

        def run(self, batch):
            return batch

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    os.mkdir(os.path.join(temp, "ray"))
    monkeypatch.setenv("RAY_TMPDIR", temp)  # where Ray writes the address of the cluster it starts
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
    try:
        with pytest.raises(ray.exceptions.RayActorError) as caught:
            list(pool_map(ray, Unloadable, {}, iter([[1], [2]]), RayOptions(workers=2), lost=None))
        assert ray_reason(caught.value) == "model.onnx: this worker has no CUDA"

        class Fragile:  # a batch that kills every worker running it (a decoder that crashes)
            def run(self, batch):
                if "poison" in batch:
                    os._exit(1)
                return batch

        lost = lambda batch, why: [f"{item}: {why}" for item in batch]  # noqa: E731
        results = list(pool_map(ray, Fragile, {}, iter([["a"], ["poison"], ["b"]]), RayOptions(workers=1), lost))
        assert sorted(results) == [
            ["a"],
            ["b"],
            ["poison: its worker died 3 times on this batch (killed, out of memory, a crash)"],
        ]
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def test_gpu_workers_on_a_cluster_without_a_gpu_are_one_line_not_a_wait(trained, images, head, tmp_path):
    done = _cli(
        trained["fp32"], images, "--ray", "--ray-address", head, "--output", tmp_path / "o.jsonl", "--device", "cuda"
    )
    assert done.returncode == 2, done.stderr
    assert (
        "error: the Ray cluster has no GPU, and workers running an engine or on a GPU device reserve 1 each"
        in done.stderr
    )
    assert not (tmp_path / "o.jsonl").exists()


def _whole_rows(path):
    """The whole rows of an output a killed process may have left with an incomplete last line."""
    data = path.read_bytes()
    return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]


def test_a_killed_driver_resumes_and_a_lost_node_loses_no_row(trained, images, tmp_path, monkeypatch):
    """issue 45: a real cluster of three raylets on this machine (Ray's own ray.cluster_utils): a
    head with no CPU, two nodes of one CPU, so each of the two workers is on a node of its own.
    The driver is killed with SIGKILL mid-run; ``--resume`` goes on, and mid-way the node of one
    worker is removed: every input exactly once, exit 0."""
    import tempfile

    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    os.mkdir(os.path.join(temp, "ray"))
    monkeypatch.setenv("RAY_TMPDIR", temp)  # its session folders and the address file it writes: ours
    # this cluster runs without token authentication (the module's `ray start` head uses it, and
    # leaves a token on this machine, which the command would otherwise use)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
        listing, total = _listing(images, tmp_path, copies=25)
        output = tmp_path / "out.jsonl"
        command = [os.path.join(BIN, "inception-run"), str(trained["fp32"]), str(listing), "--ray"]
        command += ["--ray-address", cluster.address, "--output", str(output), "--batch-size", "2", "--no-progress"]
        with _what_a_killed_driver_leaves() as left:
            killed = subprocess.Popen(command, stderr=subprocess.DEVNULL)
            try:
                assert _wait_for_rows(output, 20, killed), "the run ended before it could be killed"
            finally:
                killed.kill()
                killed.wait()
            assert [p for p in left() if p.is_dir()], "the killed driver left no folder: the check below proves nothing"
            kept = _whole_rows(output)
            assert 20 <= len(kept) < total

            resumed = subprocess.Popen(command + ["--resume"], stderr=subprocess.PIPE, text=True)
            try:
                assert _wait_for_rows(output, len(kept) + 20, resumed), "the resumed run ended before a node was lost"
                cluster.remove_node(nodes[0], allow_graceful=False)
                rows_at_loss = output.read_bytes().count(b"\n")
                _, stderr = resumed.communicate(timeout=240)
            finally:
                if resumed.poll() is None:
                    resumed.kill()
            assert not [p for p in left() if p.is_dir()], "the next run left the killed driver's scratch folder"
        assert rows_at_loss < total, "the run finished before the node was lost: the test proves nothing"
        assert resumed.returncode == 0, stderr
        rows = _rows(output)
        assert rows[: len(kept)] == kept
        assert collections.Counter(r["file"] for r in rows) == collections.Counter(listing.read_text().splitlines())
        assert all("error" not in r for r in rows)
    finally:
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@contextlib.contextmanager
def _what_a_killed_driver_leaves():
    """A driver killed outright cannot remove its Ray log and scratch folder: the test does."""
    before = set(Path("/tmp").glob("inception-ray-*"))
    try:
        yield lambda: set(Path("/tmp").glob("inception-ray-*")) - before  # what is there now, of this test's
    finally:
        for path in set(Path("/tmp").glob("inception-ray-*")) - before:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _kill_once_rows_are_being_written(command, folder):
    """``command`` killed with SIGKILL 3 s after its temporary Parquet file appeared in ``folder``."""
    killed = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(folder.glob(".out.parquet.*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(3)  # rows are being classified into the temporary file
        assert killed.poll() is None, "the run ended before it could be killed"
    finally:
        killed.kill()
        killed.wait()


def test_a_killed_parquet_run_leaves_the_output_as_it_was_and_resume_completes_it(trained, images, head, tmp_path):
    """SIGKILL mid-run on a Parquet output: the output as it was before the run (the killed run's
    rows are lost), and ``--resume`` completes it, every input once, the killed run's temporary
    file removed."""
    pq = pytest.importorskip("pyarrow.parquet")
    listing, _ = _listing(images, tmp_path, copies=60)
    output = tmp_path / "out.parquet"
    first = _cli(trained["fp32"], images / "000.png", "--ray", "--ray-address", head, "--output", output)
    assert first.returncode == 0, first.stderr
    before = output.read_bytes()
    command = [os.path.join(BIN, "inception-run"), str(trained["fp32"]), str(listing), "--ray", "--resume"]
    command += ["--ray-address", head, "--output", str(output), "--batch-size", "1", "--no-progress"]
    with _what_a_killed_driver_leaves():
        _kill_once_rows_are_being_written(command, tmp_path)
    assert output.read_bytes() == before and list(tmp_path.glob(".out.parquet.*.tmp"))
    resumed = _cli(trained["fp32"], listing, "--ray", "--ray-address", head, "--output", output, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    rows = pq.read_table(output).to_pylist()
    assert collections.Counter(r["file"] for r in rows) == collections.Counter(listing.read_text().splitlines())
    assert not list(tmp_path.glob(".out.parquet.*")), "a temporary file was left behind"


def test_a_full_disk_mid_run_is_one_line_and_the_rows_so_far_resume(trained, images, head, tmp_path):
    """issue 45: the output's file system fills up mid-run (the driver's file size limit, as
    ``ulimit -f`` sets it, stands in for a full disk): one line naming the output, exit 2, whole
    rows only; ``--resume`` without the limit completes it, every input once."""
    import resource

    listing, total = _listing(images, tmp_path, copies=10)
    output = tmp_path / "out.jsonl"
    command = [os.path.join(BIN, "inception-run"), str(trained["fp32"]), str(listing), "--ray"]
    command += ["--ray-address", head, "--output", str(output), "--batch-size", "2", "--no-progress"]

    def small_files():  # a write past 8 KB fails with EFBIG instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    full = subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=small_files)
    assert full.returncode == 2, full.stderr
    assert f"error: {output}: cannot write (File too large)" in full.stderr and "Traceback" not in full.stderr
    kept = _rows(output)  # whole rows only
    assert 0 < len(kept) < total and output.stat().st_size <= 8192
    resumed = _cli(trained["fp32"], listing, "--ray", "--ray-address", head, "--output", output, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    rows = _rows(output)
    assert rows[: len(kept)] == kept
    assert collections.Counter(r["file"] for r in rows) == collections.Counter(listing.read_text().splitlines())


def test_parquet_output_resumed_from_a_subset(trained, images, head, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    output = tmp_path / "out.parquet"
    first = sorted(images.glob("00*.png"))
    done = _cli(trained["fp32"], *first, "--ray", "--ray-address", head, "--output", output)
    assert done.returncode == 0, done.stderr
    before = pq.read_table(output).to_pylist()
    assert len(before) == len(first)
    # a file name that is not UTF-8, found in a folder (Ray cannot start from a command line holding one)
    (tmp_path / "odd").mkdir()
    shutil.copy(first[0], os.fsdecode(os.path.join(os.fsencode(tmp_path / "odd"), b"caf\xe9.png")))
    done = _cli(
        trained["fp32"], images, tmp_path / "odd", "--ray", "--ray-address", head, "--output", output, "--resume"
    )
    assert done.returncode == 1  # broken.png
    rows = pq.read_table(output).to_pylist()
    assert rows[: len(first)] == before
    odd_name = f"{tmp_path}/odd/caf\\xe9.png"  # stored with a backslash escape
    assert sorted(r["file"] for r in rows) == sorted([str(p) for p in images.iterdir()] + [odd_name])
    (odd_row,) = [r for r in rows if "caf" in r["file"]]
    assert odd_row["indices"] == next(r["indices"] for r in before if r["file"] == str(first[0]))  # same bytes
    (broken,) = [r for r in rows if r["error"] is not None]
    assert broken["file"].endswith("broken.png") and broken["indices"] is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary file was left behind"


def test_eval_on_ray_reports_what_a_local_eval_reports(trained, images, head, tmp_path):
    """The same labelled set evaluated locally and on Ray, eager PyTorch (pickled to the actors) as
    the reference and the ONNX file: the same accuracies, agreement, differences and skipped files."""
    import torch
    import trained_classifier as tc

    data = tmp_path / "labelled"
    _, labels = tc.learnable_images(24, seed=7)
    names = Predictor(trained["fp32"]).labels
    for i, label in enumerate(labels):
        (data / names[label]).mkdir(parents=True, exist_ok=True)
        shutil.copy(images / f"{i:03d}.png", data / names[label])
    shutil.copy(images / "broken.png", data / names[0])
    torch.save(trained["model"].state_dict(), tmp_path / "trained.pth")
    command = [os.path.join(BIN, "inception-eval"), "--data", str(data), "--onnx", str(trained["fp32"])]
    command += ["--arch", "v1", "--weights", str(tmp_path / "trained.pth"), "--no-progress"]
    reports = []
    for extra in ([], ["--ray", "--ray-address", head]):
        out = tmp_path / f"report{len(reports)}.json"
        done = subprocess.run(command + ["--json", str(out), *extra], capture_output=True, text=True, timeout=300)
        assert done.returncode == 1 and "broken.png" in done.stderr, done.stderr
        reports.append(json.loads(out.read_text()))
    local, on_ray = reports
    assert local["images"] == on_ray["images"] == 24 and local["skipped"] == on_ray["skipped"]
    assert (
        [m["name"] for m in local["models"]]
        == [m["name"] for m in on_ray["models"]]
        == ["eager v1", str(trained["fp32"])]
    )
    for a, b in zip(local["models"], on_ray["models"]):
        for key in ("top1", "top5", "top1_ci", "agreement", "delta_top1", "only_reference", "only_model"):
            assert a[key] == b[key], key
    assert local["models"][1]["top1"] > 0.5  # a set the classifier gets right: the comparison means something


def _ours_in_tmp() -> set:
    """What a local Ray run may leave in /tmp: Ray's default session folders, our model copies and logs."""
    return {p.name for pattern in ("ray/session_*", "inception-ray-*") for p in Path("/tmp").glob(pattern)}


def test_without_an_address_a_local_ray_is_started_and_stopped(trained, images, tmp_path):
    output = tmp_path / "out.jsonl"
    before = _ours_in_tmp()
    done = _cli(trained["fp32"], images / "000.png", images / "001.png", "--ray", "--output", output)
    assert done.returncode == 0, done.stderr
    assert "on Ray (local)" in done.stderr and len(_rows(output)) == 2
    assert not [line for line in done.stderr.splitlines() if "core_worker" in line or "WARNING" in line]
    assert _ours_in_tmp() <= before  # its session folder, logs and model copies are removed


@pytest.mark.parametrize(
    "args, message",
    [
        (["--output", "{tmp}/o.jsonl"], "--output: need --ray"),
        (["--resume"], "--resume: need --ray"),
        (["--ray"], "--ray needs --output FILE"),
        (["--ray", "--json", "--output", "{tmp}/o.jsonl"], "cannot go with --server or --json"),
        (["--ray", "--output", "{tmp}/o.csv"], "o.csv: unknown output format .csv; use .jsonl or .parquet"),
        (["--ray", "--output", "{tmp}/o.jsonl", "--ray-address", "127.0.0.1:1"], "127.0.0.1:1: no Ray head answers"),
        (["--ray", "--output", "{tmp}/o.jsonl", "--ray-address", "nowhere"], "nowhere: not a Ray address"),
        (["--ray", "--output", "{tmp}/o.jsonl", "--cpus-per-worker", "nan"], "'--cpus-per-worker': nan is not a"),
        (["--ray", "--output", "{tmp}/o.jsonl", "--cpus-per-worker", "inf"], "'--cpus-per-worker': inf is not a"),
        (["--ray", "--output", "{tmp}/existing.jsonl"], "existing.jsonl: exists; --resume continues it"),
        (["--ray", "--output", "{tmp}/corrupt.jsonl", "--resume"], "corrupt.jsonl: line 2 is not a row"),
        (["--ray", "--output", "{tmp}/corrupt.parquet", "--resume"], "corrupt.parquet: not a Parquet output"),
        (["--ray", "--output", "{tmp}/foreign.parquet", "--resume"], "foreign.parquet: not a Parquet output of"),
        (["--ray", "--output", "{tmp}/foreign.jsonl", "--resume"], "foreign.jsonl: line 1 is not a row"),
        (["--ray", "--output", "{tmp}/tail.jsonl", "--resume"], "tail.jsonl: its last line is neither a whole row"),
        # a user's file (no run record beside it) is never trimmed, however much it looks like ours
        (["--ray", "--output", "{tmp}/notes.jsonl", "--resume"], "notes.jsonl: not an output of inception-run"),
        (["--ray", "--output", "{tmp}/rows.jsonl", "--resume"], "rows.jsonl: not an output of inception-run"),
        # rows of another model, or of the same model with other preprocessing, are not continued
        (["--ray", "--output", "{tmp}/other.jsonl", "--resume"], "other.jsonl: was written with another model"),
        (["--ray", "--output", "{tmp}/other.parquet", "--resume"], "was written with other preprocessing"),
        # relative names in its rows mean files of the folder its first run started in
        (["--ray", "--output", "{tmp}/elsewhere.jsonl", "--resume"], "rows name files relative to /elsewhere, where"),
        # Ray records the command line as UTF-8 (before: "a local Ray: Ray cannot start or connect (...)")
        (["--ray", "--output", "{tmp}/o.jsonl", "caf\udce9.png"], "caf\\xe9.png: a name that is not UTF-8 cannot"),
    ],
)
def test_bad_ray_requests_are_one_line_before_any_ray_work(trained, tmp_path, args, message):
    from inception_deploy.batch.writers import RUN_RECORD, record_path, run_record
    from inception_deploy.fileio import write_json

    predictor = Predictor(trained["fp32"])
    record = run_record(trained["fp32"], predictor.config, predictor.labels)
    outputs = {
        "existing.jsonl": '{"file": "a.png", "error": "x"}\n',
        "corrupt.jsonl": '{"file": "a.png", "error": "x"}\nnot json\n',
        "corrupt.parquet": "PAR1 but no",
        "foreign.jsonl": '{"file": "a.png"}\n',  # neither a prediction nor an error
        "tail.jsonl": '{"file": "a.png", "error": "x"}\n{"config": "important"',
        "notes.jsonl": '{"config": "important", "keep": true}',
        "rows.jsonl": '{"file": "a.png", "error": "x"}\n{"file": "b.png", "er',
        "other.jsonl": '{"file": "a.png", "error": "x"}\n',
        # with an incomplete last row, which a refused resume must not cut off
        "elsewhere.jsonl": '{"file": "a.png", "error": "x"}\n{"file": "b.pn',
    }
    for name, text in outputs.items():
        (tmp_path / name).write_text(text)
        if name not in ("notes.jsonl", "rows.jsonl"):
            write_json(record_path(tmp_path / name), record, RUN_RECORD)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1]}), tmp_path / "foreign.parquet")  # a real Parquet file, not ours
    write_json(record_path(tmp_path / "foreign.parquet"), record, RUN_RECORD)
    pq.write_table(pa.table({"file": ["a.png"], "error": ["x"]}), tmp_path / "other.parquet")
    write_json(record_path(tmp_path / "other.parquet"), {**record, "preprocess": {"input_size": 1}}, RUN_RECORD)
    write_json(record_path(tmp_path / "other.jsonl"), {**record, "model_sha256": "0" * 64}, RUN_RECORD)
    write_json(record_path(tmp_path / "elsewhere.jsonl"), {**record, "cwd": "/elsewhere"}, RUN_RECORD)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(run_command, [str(trained["fp32"]), str(tmp_path / "x.png"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_without_ray_installed_the_extra_is_named(trained, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(
        run_command, [str(trained["fp32"]), str(tmp_path), "--ray", "--output", str(tmp_path / "o.jsonl")]
    )
    assert result.exit_code == 2
    assert "needs ray: pip install 'inception-deploy[ray]'" in result.output
    assert "on Ray" not in result.output and "img/s" not in result.output  # said first, before any banner or bar
