"""Batch classification through Ray against the in-process Predictor, side by side in one run.

Both go through the real command line on the same N images (the shipped photos, listed over
and over in one list file): ``inception-run MODEL LIST --json`` (one process, decoding threads
and ONNX Runtime on every core) and ``inception-run MODEL LIST --ray --workers W --output
out.jsonl`` (a local Ray started by the command, W actors of one core each). Printed per run:
wall time, images/s, time to the first result row and the rate after it, and peak resident memory of the driver
process and of the largest Ray worker (polled every 0.2 s with psutil, which Ray installs).

    python scripts/bench_ray.py --images 2000             # the issue's comparison
    python scripts/bench_ray.py --images 10000 --only ray  # memory for 10,000 images
"""

from __future__ import annotations

import argparse
import os
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


def measure(command: list[str], output: Path) -> dict:
    """Run ``command``; its wall time, when ``output`` got its first rows (and how many), and
    the peak RSS of the process and of its largest Ray worker."""
    stdout = open(output, "w") if output.suffix == ".json" else subprocess.DEVNULL  # the local run's rows
    begin = time.perf_counter()
    process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, text=True)
    driver = psutil.Process(process.pid)
    peak_driver = peak_worker = 0
    first_row = rows_then = None
    while process.poll() is None:
        try:
            peak_driver = max(peak_driver, driver.memory_info().rss)
        except psutil.Error:
            pass
        for p in psutil.process_iter(["cmdline", "memory_info"]):
            if "ray::MapWorker" in " ".join(p.info["cmdline"] or []) and p.info["memory_info"] is not None:
                peak_worker = max(peak_worker, p.info["memory_info"].rss)
        if first_row is None and output.exists() and output.stat().st_size:
            first_row, rows_then = time.perf_counter() - begin, output.read_bytes().count(b"\n")
        time.sleep(0.2)
    wall = time.perf_counter() - begin
    stderr = process.stderr.read()
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({process.returncode}):\n{stderr}")
    return {"wall": wall, "first_row": first_row, "rows_then": rows_then, "driver": peak_driver, "worker": peak_worker}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="an exported .onnx [default: inception-export --arch v1, random weights]")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--only", choices=["local", "ray"], help="run one side only")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            model = str(tmp / "googlenet.onnx")
            export = [str(BIN / "inception-export"), "--arch", "v1", "-o", model, "--no-parity", "--engine", "no"]
            subprocess.run(export + ["-q"], check=True)
        photos = [str(p) for p in sample_photos()]
        listing = tmp / "images.txt"
        listing.write_text("".join(photos[i % len(photos)] + "\n" for i in range(args.images)))
        run = [str(BIN / "inception-run"), model, str(listing), "--no-progress", "--batch-size", str(args.batch_size)]
        results = {}
        if args.only in (None, "local"):
            results["in-process Predictor"] = measure(run + ["--json"], tmp / "local.json")
        if args.only in (None, "ray"):
            ray_run = run + ["--ray", "--workers", str(args.workers), "--output", str(tmp / "out.jsonl")]
            results[f"Ray, {args.workers} workers"] = measure(ray_run, tmp / "out.jsonl")
            rows = (tmp / "out.jsonl").read_text().count("\n")
            assert rows == args.images, f"{rows} rows for {args.images} images"

    mb = lambda b: f"{b / 2**20:,.0f}" if b else "-"  # noqa: E731
    table = [
        (
            name,
            f"{r['wall']:.1f}",
            f"{args.images / r['wall']:.1f}",
            f"{r['first_row']:.1f}" if r["first_row"] else "-",
            f"{(args.images - r['rows_then']) / (r['wall'] - r['first_row']):.1f}" if r["first_row"] else "-",
            mb(r["driver"]),
            mb(r["worker"]),
        )
        for name, r in results.items()
    ]
    print(f"{args.images} images, {Path(model).name if args.model else 'v1 (random weights)'}, {os.cpu_count()} CPUs")
    print(
        tabulate(
            table,
            headers=(
                "run",
                "wall s",
                "images/s",
                "first row s",
                "images/s after it",
                "driver peak MB",
                "worker peak MB",
            ),
            disable_numparse=True,
        )
    )
    if len(results) == 2:
        local, ray = results.values()
        rate = lambda r: (args.images - r["rows_then"]) / (r["wall"] - r["first_row"])  # noqa: E731
        steady = rate(local) / rate(ray)
        print(
            f"Ray against the in-process Predictor: {100 * (ray['wall'] / local['wall'] - 1):+.0f}% wall time, "
            f"{100 * (steady - 1):+.0f}% after the first row (Ray's start and the actors' model loading)"
        )


if __name__ == "__main__":
    main()
