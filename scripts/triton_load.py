"""Requests/s and p50/p99 latency through a real Triton server, against in-process Predictor.

    python scripts/triton_load.py [--models A.onnx B.onnx] [--requests 96] [--concurrency 1,8,32]

Without --models, Inception v3 is exported (FP32, random weights: speed does not depend on them)
with an INT8 model for the CPU (calibrated on the shipped photos) to a temporary folder. One
repository serves them all (max batch --max-batch, the in-process batch too) on the local server
inception-serve starts (the CPU build bundled with nvidia-pytriton: ONNX runs in the package's
Python-based stand-in backend on ONNX Runtime). Each request is one JPEG (the shipped photos,
cycled), sent through <name>_pipeline over HTTP and gRPC by --concurrency clients at once, each
sending its next request when the previous answer arrives. In-process rows: Predictor.predict on
the same files, one image per call (latency) and --max-batch images per call (throughput).
Everything runs on this machine: client, server and model share its cores.
"""

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

from inception_deploy.inputs import sample_photos
from inception_deploy.runtime import Predictor
from inception_deploy.serving import TritonClient, TritonServer, write_repository


def load(url: str, model: str, files: list[str], concurrency: int) -> tuple[float, list[float]]:
    """(requests/s, latencies in s) with ``concurrency`` closed-loop clients over ``files``."""
    clients = [TritonClient(url, model, concurrency=1) for _ in range(concurrency)]
    for client in clients:  # connections open and the model warm
        client.classify(files[0])
    latencies, lock, next_index = [], threading.Lock(), iter(range(len(files)))

    def worker(client):
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            start = time.perf_counter()
            prediction = client.classify(files[index], topk=5)
            elapsed = time.perf_counter() - start
            if prediction.error is not None:
                raise RuntimeError(f"{files[index]}: {prediction.error}")
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) / (time.perf_counter() - start), latencies


def in_process(model: Path, files: list[str], batch: int) -> list[tuple]:
    predictor = Predictor(model, device="cpu", batch_size=batch)
    predictor.predict(files[:batch])
    single = []
    for f in files[: max(16, len(files) // 4)]:
        start = time.perf_counter()
        predictor.predict([f])
        single.append(time.perf_counter() - start)
    start = time.perf_counter()
    predictor.predict(files)
    rate = len(files) / (time.perf_counter() - start)
    return [
        ("in-process", 1, 1 / np.mean(single), *_percentiles(single)),
        (f"in-process, batch {batch}", "-", rate, "-", "-"),
    ]


def _percentiles(latencies) -> tuple[str, str]:
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
    return f"{p50:.1f}", f"{p99:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--requests", type=int, default=96, help="requests per row")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--max-batch", type=int, default=8)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    photos = [str(p) for p in sample_photos()]
    files = [photos[i % len(photos)] for i in range(args.requests)]
    with tempfile.TemporaryDirectory() as tmp:
        models = [Path(m) for m in args.models or []]
        if not models:
            from inception_deploy.calibration.policy import CalibrationRequest
            from inception_deploy.inputs import sample_folder
            from inception_deploy.pipeline import EngineOptions, ExportRequest, Int8Request, VerifyRequest, deploy

            result = deploy(
                ExportRequest("v3", Path(tmp) / "v3.onnx"),
                int8=Int8Request(CalibrationRequest(sample_folder()), target="cpu"),
                engine=EngineOptions("no"),
                verify=VerifyRequest(parity=False),
                progress=print,
            )
            models = [a.path for a in result.artifacts]
        written = write_repository(models, Path(tmp) / "repository", max_batch=args.max_batch)
        rows = []
        with TritonServer(Path(tmp) / "repository", http_port=0, grpc_port=0, metrics_port=0) as server:
            for model, entry in zip(models, written):
                for protocol, url in (("http", f"http://{server.url}"), ("grpc", f"grpc://{server.grpc_url}")):
                    for concurrency in levels:
                        rate, latencies = load(url, f"{entry.name}_pipeline", files, concurrency)
                        rows.append(
                            (model.name, f"Triton {protocol}", concurrency, f"{rate:.1f}", *_percentiles(latencies))
                        )
                        print(rows[-1], flush=True)
        for model in models:  # the server is stopped: the in-process rows have the machine alone
            rows += [
                (model.name, what, c, f"{rate:.1f}", p50, p99)
                for what, c, rate, p50, p99 in in_process(model, files, args.max_batch)
            ]
    print(
        tabulate(
            rows, headers=("model", "client", "concurrency", "requests/s", "p50 ms", "p99 ms"), disable_numparse=True
        )
    )


if __name__ == "__main__":
    main()
