"""Export wall time and file size per architecture (ONNX, FP32, dynamic batch).

    python scripts/export_times.py [--archs v1,v3] [--opset 17]

Each model is built first (not timed); then export (trace, convert, optimize, check, metadata)
and the ONNX Runtime parity check are timed separately.
"""

import argparse
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from inception_deploy import create_model, list_archs
from inception_deploy.export import export_onnx
from inception_deploy.runtime import OnnxRuntimeBackend
from inception_deploy.verify.comparator import check_backend


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default=",".join(list_archs()))
    parser.add_argument("--opset", type=int, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for arch in args.archs.split(","):
            model = create_model(arch)
            start = time.perf_counter()
            result = export_onnx(model, Path(folder) / f"{arch}.onnx", opset=args.opset, check_parity=False)
            export_s = time.perf_counter() - start
            start = time.perf_counter()
            backend = OnnxRuntimeBackend(result.path, device="cpu")
            report = check_backend(model, backend, result.metadata.preprocess, (1, 8))
            parity_s = time.perf_counter() - start
            rows.append(
                (
                    arch,
                    result.exporter,
                    result.opset,
                    f"{export_s:.1f}",
                    f"{parity_s:.1f}",
                    f"{result.size_bytes / 1e6:.1f}",
                    "PASS" if report.passed else "FAIL",
                )
            )
            print(*rows[-1], flush=True)
    print()
    print(
        tabulate(
            rows,
            headers=("arch", "exporter", "opset", "export s", "parity s", "size MB", "parity"),
            tablefmt="github",
            disable_numparse=True,
        )
    )


if __name__ == "__main__":
    main()
