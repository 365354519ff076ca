"""INT8 under an accuracy budget: layers (Convs, pools) kept float, most sensitive first, until top-1 on
images the calibration never saw is within ``max_drop`` points of FP32.

Judged on a held-out share of the calibration folder (top-1 agreement with the FP32 model), or on
a labelled set (top-1 accuracy against the labels, FP32's minus INT8's). Layers are ranked once
(``calibration.sensitivity``: the logits error of each layer alone in INT8), then the number kept
float is searched from zero upwards (0, 1, 2, 4, 8, ... float layers, then bisection between the
last count that missed and the first that met the budget), each placement written from the same
calibration and run on the judged images, so the answer is a measured one. Upwards, because the
judged drop moves by whole images and is not monotone in the count: on the v3 of
scripts/int8_budget.py, 0 layers float flipped 3 of 100 images, 5 flipped none, 10 to 54 one each
(a near-tie), so a bisection from "all float" that first tries half the layers can settle ten
times higher than needed. The drop reached is reported with its 95% interval.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InceptionDeployError, setting
from ..inputs import decoded, image_folder, spread
from ..preprocess import PreprocessConfig, normalize
from ..progress import Progress, counted, silent, stage
from ..runtime.onnxruntime_backend import OnnxRuntimeBackend
from ..statistics import paired_difference, wilson
from .cache import CalibrationCache
from .qdq import write_qdq
from .sensitivity import conv_macs, layer_sensitivity

MIN_HOLDOUT = 20  # fewer judged images cannot tell a 1-point drop from noise at all
RANKING_IMAGES = 8  # calibration images each layer's variant runs on (v3: Spearman 0.997 with 16's ranking)


@dataclass
class Budget:
    """What ``--int8-max-drop`` asks: at most ``max_drop`` points of top-1, judged on a held-out
    ``holdout`` share of the calibration folder, or on ``labelled`` (files, labels) when given."""

    max_drop: float
    holdout: float = 0.2
    labelled: tuple[list, np.ndarray] | None = None

    def check(self, folder) -> None:
        """Refuse, before any slow work, a budget that is no number of points or a hold-out too
        small to judge."""
        if not 0 <= self.max_drop <= 100:
            raise InceptionDeployError(
                f"{setting('Int8Request.max_drop')} is in percentage points, 0 to 100, not {self.max_drop:g}"
            )
        if not 0 < self.holdout < 1:
            raise InceptionDeployError(
                f"{setting('Int8Request.holdout')} is a share of {setting('CalibrationRequest.folder')}, "
                f"between 0 and 1, "
                f"not {self.holdout:g}"
            )
        if self.labelled is not None:
            if len(self.labelled[0]) < MIN_HOLDOUT:
                raise InceptionDeployError(
                    f"{setting('VerifyRequest.eval_data')} has {len(self.labelled[0])} images; "
                    f"{setting('Int8Request.max_drop')} needs at least {MIN_HOLDOUT}"
                )
            return
        files = image_folder(folder).files
        held = round(len(files) * self.holdout)
        if held >= len(files):
            raise InceptionDeployError(
                f"{folder}: {setting('Int8Request.holdout')} {self.holdout:g} holds out all {len(files)} images and "
                f"leaves none to calibrate on: a smaller {setting('Int8Request.holdout')}, or "
                f"{setting('VerifyRequest.eval_data')}"
            )
        if held < MIN_HOLDOUT:
            needed = MIN_HOLDOUT / self.holdout
            enough = f"{math.ceil(needed)} images, " if needed <= 1e9 else ""
            raise InceptionDeployError(
                f"{folder}: {setting('Int8Request.max_drop')} judges on a held-out {self.holdout:.2g} of the "
                f"calibration images: "
                f"{len(files)} images hold out {held}, at least {MIN_HOLDOUT} are needed "
                f"({enough}a larger {setting('Int8Request.holdout')}, or {setting('VerifyRequest.eval_data')})"
            )

    def held_out(self, folder) -> list[Path]:
        """The images calibration must not see (none when a labelled set judges)."""
        if self.labelled is not None:
            return []
        files = list(image_folder(folder).files)
        return spread(files, round(len(files) * self.holdout))


@dataclass
class BudgetReport:
    max_drop: float
    judged_on: str
    images: int
    measure: str
    drop: float  # points, the placement chosen
    interval: tuple[float, float]  # its 95% interval, points
    kept: list[str]  # module paths kept float, most sensitive first
    int8_macs: float  # share of the Convs' multiply-adds still in INT8
    int8_convs: float  # share of the Conv layers still in INT8
    tried: list[tuple[int, float]] = field(default_factory=list)  # (layers float, drop)
    seconds: float = 0.0

    @property
    def met(self) -> bool:
        return self.drop <= self.max_drop

    def summary(self) -> str:
        low, high = self.interval
        verdict = "within" if self.met else "NOT within"
        shown = ", ".join(self.kept[:6]) + (f" and {len(self.kept) - 6} more" if len(self.kept) > 6 else "")
        return (
            f"INT8 budget {counted(self.max_drop, 'point')} ({self.measure}, {self.images} images of "
            f"{self.judged_on}): drop {self.drop:.2f} points (95% interval {low:.2f} to {high:.2f}), {verdict} the "
            f"budget; {counted(len(self.kept), 'layer')} float{': ' + shown if shown else ''}; "
            f"{self.int8_convs:.0%} of the Convs and {self.int8_macs:.1%} of their multiply-adds in INT8; "
            f"{len(self.tried)} placements tried in {self.seconds:.0f} s"
        )

    def to_dict(self) -> dict:
        return {
            "max_drop": self.max_drop,
            "judged_on": self.judged_on,
            "images": self.images,
            "measure": self.measure,
            "drop": self.drop,
            "interval": list(self.interval),
            "met": self.met,
            "kept_float": self.kept,
            "int8_macs": self.int8_macs,
            "int8_convs": self.int8_convs,
            "tried": [{"float_layers": k, "drop": d} for k, d in self.tried],
            "seconds": self.seconds,
        }


def search(
    src,
    prepared,
    calibration: CalibrationCache,
    target: str,
    budget: Budget,
    folder,
    config: PreprocessConfig,
    layers: dict[str, list[str]],
    fixed: dict[str, str],
    convert=None,
    weight_bits: int | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, str], BudgetReport]:
    """The modules to keep float (module -> why; ``fixed`` ones always) and the report.
    ``layers``: module path -> its quantizable nodes (``calibration.float_layers.quantizable_layers``);
    ``convert``: applied to each placement's ONNX proto before it runs (the FP16 remainder)."""
    import onnx

    say = progress or silent
    start = time.perf_counter()
    held = budget.held_out(folder)
    judged, labels, judged_on, measure = _judged_images(budget, folder, held, config)
    fp32 = OnnxRuntimeBackend(src)
    fp32_top1 = _top1(fp32, judged)
    tried: dict[int, tuple[float, tuple[float, float]]] = {}
    order: list[str] = []  # modules, most sensitive first, once ranked

    def drop_with(count: int) -> float:
        if count not in tried:
            float_nodes = _nodes([*fixed, *order[:count]], layers)
            with tempfile.TemporaryDirectory(prefix="inception-budget-") as tmp:
                path = Path(tmp) / "candidate.onnx"
                write_qdq(prepared, calibration, target, path, float_nodes, weight_bits)
                if convert is not None:
                    onnx.save(convert(onnx.load(str(path))), str(path))
                top1 = _top1(OnnxRuntimeBackend(path), judged)
            tried[count] = _drop(fp32_top1, top1, labels)
            say(f"  {counted(len(fixed) + count, 'layer')} float: drop {tried[count][0]:.2f} points")
        return tried[count][0]

    within = counted(budget.max_drop, "point")
    say(f"searching the fewest float layers within {within} on {len(judged)} images ({measure})...")
    errors: dict[str, float] = {}
    count = 0  # the full INT8 first: when it holds, there is nothing to rank
    if drop_with(0) > budget.max_drop:
        held_set = set(held)
        calibration_files = [f for f in image_folder(folder).files if f not in held_set]
        ranked, errors = _rank(prepared, calibration, calibration_files, config, layers, fixed, fp32, say)
        order.extend(ranked)
        count = fewest(drop_with, len(order), budget.max_drop)
        if count is None:  # every layer float misses too: the best seen; the caller reports failure
            count = min(tried, key=lambda k: (tried[k][0], k))
    kept = dict(fixed)
    for rank, module in enumerate(order[:count], 1):
        kept[module] = (
            f"--int8-max-drop {budget.max_drop:g}: sensitivity rank {rank} (logits MSE alone {errors[module]:.3g})"
        )
    macs = conv_macs(prepared, judged[:1])
    float_macs = sum(macs[node] for node in _nodes(kept, layers) if node in macs)
    drop, interval = tried[count]
    report = BudgetReport(
        budget.max_drop,
        judged_on,
        len(judged),
        measure,
        drop,
        interval,
        list(kept),
        1 - float_macs / max(sum(macs.values()), 1),
        1 - len(_nodes(kept, layers) & macs.keys()) / max(len(macs), 1),
        sorted((len(fixed) + k, d) for k, (d, _) in tried.items()),
        time.perf_counter() - start,
    )
    return kept, report


def fewest(drop, layers: int, max_drop: float) -> int | None:
    """The fewest of ``layers`` (most sensitive first) to keep float for ``drop(count)`` to be within
    ``max_drop``, where ``drop(0)`` is known to miss; None when even all of them miss. Counts are
    tried upwards (1, 2, 4, ...) until one holds, then bisected between the last miss and it: the
    judged drop is not monotone in the count, so the search stays near the fewest."""
    if layers == 0:
        return None
    low, high = 0, 1  # low misses the budget, high is the count to try
    while high < layers and drop(high) > max_drop:
        low, high = high, min(2 * high, layers)
    if drop(high) > max_drop:
        return None
    while high - low > 1:
        middle = (low + high) // 2
        if drop(middle) <= max_drop:
            high = middle
        else:
            low = middle
    return high


def _rank(prepared, calibration, files: list, config, layers, fixed, fp32, say):
    """The modules not in ``fixed``, most sensitive first, and each one's logits error alone in
    INT8, measured on calibration ``files`` (the judged images must not choose the layers)."""
    ranking = _decode(spread(files, RANKING_IMAGES), config)
    module_of = {node: module for module, nodes in layers.items() for node in nodes}
    what = f"ranking the quantized layers by the logits error of each alone in INT8 ({len(ranking)} images)"
    with stage(say, what), tempfile.TemporaryDirectory(prefix="inception-budget-") as tmp:
        # the tensorrt placement for either target: weights behind Q/DQ pairs can be read float again
        every = Path(tmp) / "every.onnx"
        write_qdq(prepared, calibration, "tensorrt", every, _nodes(fixed, layers))
        ranked = layer_sensitivity(every, fp32.infer(ranking), ranking, module_of)
    order = list(dict.fromkeys(layer.module for layer in ranked if layer.module and layer.module not in fixed))
    return order, {layer.module: layer.error for layer in reversed(ranked)}  # a module's largest


def _nodes(modules, layers: dict[str, list[str]]) -> frozenset[str]:
    return frozenset(node for module in modules for node in layers[module])


def _judged_images(budget: Budget, folder, held: list, config: PreprocessConfig):
    if budget.labelled is not None:
        files, labels = budget.labelled
        return _decode(files, config), np.asarray(labels), "the labelled set", "top-1 accuracy drop against labels"
    return _decode(held, config), None, f"{folder} held out of calibration", "top-1 agreement with FP32"


def _decode(files, config: PreprocessConfig) -> np.ndarray:
    images = list(decoded(files, config, []))
    if not images:
        raise InceptionDeployError("none of the images to judge the INT8 budget on could be read")
    return normalize(np.stack(images), config)


def _top1(backend, images: np.ndarray) -> np.ndarray:
    return np.concatenate([backend.infer(images[i : i + 32]).argmax(1) for i in range(0, len(images), 32)])


def _drop(fp32: np.ndarray, int8: np.ndarray, labels: np.ndarray | None) -> tuple[float, tuple[float, float]]:
    """Points of top-1 lost and its 95% interval: disagreement with FP32 (Wilson), or FP32's
    accuracy minus INT8's against labels (paired)."""
    if labels is None:
        disagree = int(np.sum(fp32 != int8))
        low, high = wilson(disagree, len(fp32))
        return 100 * disagree / len(fp32), (100 * low, 100 * high)
    fp32_right, int8_right = fp32 == labels, int8 == labels
    diff, low, high = paired_difference(
        int(np.sum(int8_right & ~fp32_right)), int(np.sum(fp32_right & ~int8_right)), len(labels)
    )
    return 100 * diff, (100 * low, 100 * high)
