"""Batch classification through Ray against the in-process Predictor, side by side in one run.

Every run goes through the real command line on the same N images (the shipped photos, listed
over and over in one list file): ``inception-run MODEL LIST --json`` (one process, decoding
threads and ONNX Runtime on every core) and ``inception-run MODEL LIST --ray --workers W
--output out.jsonl`` (a local Ray started by the command, W actors of one core each) for each W.
Printed per run: wall time, images/s, time to the first result row and the rate after it, the
driver's CPU time per 1,000 rows after the first (what one driver can write per second follows
from it), and peak resident memory of the driver process and of the largest Ray worker (polled
every 0.2 s with psutil, which Ray installs).

    python scripts/bench_ray.py --images 2000 10000       # in-process, Ray with 1 and 2 workers
    python scripts/bench_ray.py --stream 10000 100000 1000000

``--stream`` measures the start of a run over a list of N lines and then ``--resume`` over an
output that already has N rows (copies of one real run's rows, with its run record): time to
the first new row and the driver's peak memory, each run stopped with Ctrl-C once it has
written rows for 5 s.

``--driver`` measures what one driver can write: the command's own pool and JSON Lines writer,
in this process, fed by actors that answer each batch at once with rows of a real row's size
(no decoding, no model), so the driver is the bottleneck: rows/s and its CPU per 1,000 rows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inception_deploy.inputs import sample_photos  # noqa: E402

BIN = Path(sys.executable).parent


def measure(command: list[str], output: Path, stop_after: float | None = None) -> dict:
    """Run ``command``; its wall time, when ``output`` got its first new rows (and how many it
    then had), the driver's CPU seconds from then to the end, and the peak RSS of the process and
    of its largest Ray worker. ``stop_after``: Ctrl-C that many seconds after the first new row."""
    stdout = open(output, "w") if output.suffix == ".json" else subprocess.DEVNULL  # the local run's rows
    size_before = output.stat().st_size if output.exists() and output.suffix != ".json" else 0
    begin = time.perf_counter()
    process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, text=True)
    driver = psutil.Process(process.pid)
    peak_driver = peak_worker = 0
    first_row = rows_then = cpu_then = cpu_end = None
    while process.poll() is None:
        try:
            peak_driver = max(peak_driver, driver.memory_info().rss)
            times = driver.cpu_times()
            cpu_end = times.user + times.system
        except psutil.Error:
            pass
        for p in psutil.process_iter(["cmdline", "memory_info"]):
            if "ray::_Classifier" in " ".join(p.info["cmdline"] or []) and p.info["memory_info"] is not None:
                peak_worker = max(peak_worker, p.info["memory_info"].rss)
        if first_row is None and output.exists() and output.stat().st_size > size_before:
            first_row, rows_then, cpu_then = time.perf_counter() - begin, _lines(output), cpu_end
        if stop_after is not None and first_row is not None and time.perf_counter() - begin > first_row + stop_after:
            process.send_signal(signal.SIGINT)
            stop_after = None
        time.sleep(0.2)
    wall = time.perf_counter() - begin
    stderr = process.stderr.read()
    if process.returncode not in (0, 130):
        sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{stderr}")
    rows = _lines(output) - (rows_then or 0)
    cpu = 1000 * (cpu_end - cpu_then) / rows if rows and cpu_then is not None else None
    return dict(wall=wall, first_row=first_row, rows_then=rows_then, driver=peak_driver, worker=peak_worker, cpu=cpu)


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(2**20), b""))


def listing(path: Path, count: int) -> Path:
    photos = [str(p) for p in sample_photos()]
    with open(path, "w") as f:
        f.writelines(photos[i % len(photos)] + "\n" for i in range(count))
    return path


def scaling(args, model: str, tmp: Path) -> None:
    """In-process and Ray with each worker count, on the same N images, for each N."""
    for count in args.images:
        images = listing(tmp / "images.txt", count)
        run = [str(BIN / "inception-run"), model, str(images), "--no-progress", "--batch-size", str(args.batch_size)]
        results = {"in-process Predictor": measure(run + ["--json"], tmp / "local.json")}
        results["in-process Predictor"]["cpu"] = None  # its process is the classifier, not a driver
        for workers in args.workers:
            output = tmp / f"out{count}-{workers}.jsonl"
            ray_run = run + ["--ray", "--workers", str(workers), "--cpus-per-worker", "1", "--output", str(output)]
            results[f"Ray, {workers} worker{'s' * (workers > 1)}"] = measure(ray_run, output)
            rows = _lines(output)
            assert rows == count, f"{rows} rows for {count} images"
        print(f"\n{count} images, {Path(model).name if args.model else 'v1 (random weights)'}, {os.cpu_count()} CPUs")
        table(results, count)
        rate = {name: count / r["wall"] for name, r in results.items()}
        local = rate.pop("in-process Predictor")
        print(", ".join(f"{name}: {r / local:.2f}x the in-process rate" for name, r in rate.items()))
        if len(rate) == 2:
            one, two = rate.values()
            print(f"{args.workers[1]} workers against {args.workers[0]}: {two / one:.2f}x")


def streaming(args, model: str, tmp: Path) -> None:
    """The start of a run over N inputs, and of --resume over an output with N rows."""
    base = [str(BIN / "inception-run"), model, "--no-progress", "--batch-size", str(args.batch_size), "--ray"]
    seed = tmp / "seed.jsonl"  # rows of one real run, copied to make an output of N rows
    subprocess.run(base[:2] + [str(listing(tmp / "seed.txt", 60))] + base[2:] + ["--output", str(seed)], check=True)
    seed_rows = seed.read_bytes().splitlines(keepends=True)
    results = {}
    for count in args.stream:
        images = listing(tmp / "images.txt", count)
        output = tmp / f"start{count}.jsonl"
        results[f"start, {count:,} inputs"] = measure(base + [str(images), "--output", str(output)], output, 5)
        done = tmp / f"done{count}.jsonl"
        with open(done, "wb") as f:
            f.writelines(seed_rows[i % len(seed_rows)] for i in range(count))
        Path(f"{done}.run.json").write_bytes(Path(f"{seed}.run.json").read_bytes())
        more = listing(tmp / "more.txt", count + 1000)
        resume = base + [str(more), "--output", str(done), "--resume"]
        results[f"--resume, {count:,} rows done"] = measure(resume, done, 5)
    table(results, None)


def driver(args, tmp: Path) -> None:
    """The driver alone at full speed: the pool and the writer, actors that answer at once."""
    import ray

    from inception_deploy.batch.session import RayOptions, pool_map
    from inception_deploy.batch.writers import JsonLines

    class Instant:  # a batch's rows without decoding or inference: only the driver's work is left
        def run(self, batch):
            row = {"labels": ["tabby"] * 5, "indices": [281] * 5, "probabilities": [0.2] * 5, "error": None}
            return [{"file": source, **row} for _, source in batch]

    photo = str(sample_photos()[0])
    session = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, _temp_dir=session)
    try:
        table = []
        for batch_size in args.driver_batches:
            output = tmp / f"driver{batch_size}.jsonl"
            writer = JsonLines(output, {"model": "-", "model_sha256": "-", "preprocess": {}, "labels_sha256": "-"})
            rows = args.driver
            batches = ([(i, photo)] * batch_size for i in range(rows // batch_size))
            cpu, wall = time.process_time(), time.perf_counter()
            for result in pool_map(ray, Instant, {}, batches, RayOptions(workers=args.workers[-1])):
                writer.write(result)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            writer.close()
            table.append((batch_size, f"{rows:,}", f"{wall:.1f}", f"{rows / wall:,.0f}", f"{1000 * cpu / rows:.3f}"))
    finally:
        ray.shutdown()
        shutil.rmtree(session, ignore_errors=True)
    print(f"\none driver, {args.workers[-1]} instant actors, {os.cpu_count()} CPUs")
    headers = ("batch size", "rows", "wall s", "rows/s", "driver CPU s / 1,000 rows")
    print(tabulate(table, headers=headers, disable_numparse=True))


def table(results: dict, count: int | None) -> None:
    mb = lambda b: f"{b / 2**20:,.0f}" if b else "-"  # noqa: E731
    rows = [
        (
            name,
            f"{r['wall']:.1f}",
            f"{count / r['wall']:.1f}" if count else "-",
            f"{r['first_row']:.1f}" if r["first_row"] else "-",
            f"{(count - r['rows_then']) / (r['wall'] - r['first_row']):.1f}" if count and r["first_row"] else "-",
            f"{r['cpu']:.2f}" if r["cpu"] is not None else "-",
            mb(r["driver"]),
            mb(r["worker"]),
        )
        for name, r in results.items()
    ]
    headers = ("run", "wall s", "images/s", "first row s", "images/s after it", "driver CPU s / 1,000 rows")
    print(tabulate(rows, headers=headers + ("driver peak MB", "worker peak MB"), disable_numparse=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="an exported .onnx [default: inception-export --arch v1, random weights]")
    parser.add_argument("--images", type=int, nargs="*", default=[2000], help="image counts for the scaling runs")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts [1 2]")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--stream", type=int, nargs="+", help="list lengths for the start and --resume runs")
    parser.add_argument("--driver", type=int, help="rows for the driver-alone run")
    parser.add_argument("--driver-batches", type=int, nargs="+", default=[8, 64], help="batch sizes for it")
    args = parser.parse_args()
    if args.driver:
        with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
            driver(args, Path(tmp))
        return

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            model = str(tmp / "googlenet.onnx")
            export = [str(BIN / "inception-export"), "--arch", "v1", "-o", model, "--no-parity", "--engine", "no"]
            subprocess.run(export + ["-q"], check=True)
        if args.stream:
            streaming(args, model, tmp)
        else:
            scaling(args, model, tmp)


if __name__ == "__main__":
    main()
