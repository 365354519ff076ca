"""INT8 under an accuracy budget: layers (Convs, pools) kept float, most sensitive first, until top-1 on
images the calibration never saw is shown to be within ``max_drop`` points of FP32.

"Shown" means the 95% upper bound of the drop, not its point estimate: 0 flips in 22 images is a
drop of 0.00 points whose interval reaches 14.9, which shows nothing about a 1-point budget. A
budget of b points needs at least 3.84 x (100/b - 1) judged images even when none flips
(``images_needed``: 381 for 1 point, 189 for 2); fewer are refused before any slow work, unless
the caller accepts an unproven result (``Budget.accept_unproven``), which the file then records.

Judged on a held-out share of the calibration folder (top-1 agreement with the FP32 model), or on
a labelled set (the share of images only FP32 gets right bounds the accuracy lost from above), on
every runtime the file is for: a cpu-target file on ONNX Runtime and on OpenVINO (their int8
kernels round differently), the worse of the two deciding. Beside top-1, the mean KL divergence
of the softmax and the smallest logit cosine are reported: small sets still carry information in
them, but top-1's upper bound is what decides.

Layers are ranked once (``calibration.sensitivity``: the logits error of each layer alone in INT8),
then the number kept float is searched from zero upwards (0, 1, 2, 4, 8, ... float layers, then
bisection between the last count that missed and the first that met the budget), each placement
written from the same calibration and run on the judged images, so the answer is a measured one.
Upwards, because the judged drop moves by whole images and is not monotone in the count: on the
v3 of scripts/int8_budget.py, 0 layers float flipped 3 of 100 images, 5 flipped none, 10 to 54 one
each (a near-tie), so a bisection from "all float" that first tries half the layers can settle ten
times higher than needed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import fill

import numpy as np

from ..errors import InceptionDeployError, printable, setting
from ..inputs import decoded, distinct_images, image_folder, spread
from ..metadata import Metadata
from ..preprocess import PreprocessConfig, normalize
from ..progress import Progress, counted, silent, stage
from ..runtime.onnxruntime_backend import OnnxRuntimeBackend
from ..statistics import Z95, cosines, mean_kl, wilson
from .cache import CalibrationCache
from .qdq import Corrections, float_changes_nothing, head_nodes, quantized_op_types, write_qdq
from .sensitivity import conv_macs, layer_sensitivity

log = logging.getLogger(__name__)

RANKING_IMAGES = 8  # calibration images each layer's variant runs on (v3: Spearman 0.997 with 16's ranking)
DECIDES = "top-1, its 95% upper bound"
DECIDES_UNPROVEN = "top-1, its point estimate (an unproven result accepted)"


def images_needed(max_drop: float) -> int | None:
    """The fewest judged images that can show a drop of at most ``max_drop`` points, reached only
    when none flips (Wilson's upper bound of 0 in n is z^2 / (n + z^2)); None for a 0-point budget,
    which no number of images shows."""
    if max_drop <= 0:
        return None
    n = max(0, math.floor(Z95**2 * (100 / max_drop - 1)))
    while 100 * wilson(0, n)[1] > max_drop:
        n += 1
    return n


def smallest_shown(images: int) -> float:
    """The smallest budget, in points, that ``images`` judged images can show (none flipped)."""
    return 100 * wilson(0, images)[1]


@dataclass
class Budget:
    """What ``--int8-max-drop`` asks: at most ``max_drop`` points of top-1, judged on a held-out
    ``holdout`` share of the calibration folder, or on ``labelled`` (files, labels) when given.
    ``accept_unproven``: search on the point estimate where the images are too few to show the
    budget, and record the result as unproven."""

    max_drop: float
    holdout: float = 0.2
    labelled: tuple[list, np.ndarray] | None = None
    accept_unproven: bool = False

    def check(self, folder) -> None:
        """Refuse, before any slow work, a budget that is no number of points, a hold-out that
        leaves nothing on one side, or judged images too few to show the budget (unless an
        unproven result is accepted)."""
        if not 0 <= self.max_drop <= 100:
            raise InceptionDeployError(
                f"{setting('Int8Request.max_drop')} is in percentage points, 0 to 100, not {self.max_drop:g}"
            )
        if not 0 < self.holdout < 1:
            raise InceptionDeployError(
                f"{setting('Int8Request.holdout')} is a share of {setting('CalibrationRequest.folder')}, "
                f"between 0 and 1, not {self.holdout:g}"
            )
        needed = images_needed(self.max_drop)
        if self.labelled is not None:
            judged = len(self.labelled[0])
            where, more = f"{setting('VerifyRequest.eval_data')} has {judged} images", "more labelled images"
        else:
            files, copies = distinct_images(image_folder(folder).files)
            if copies:
                log.warning(
                    "%s: %d files are byte-for-byte copies of others: each image is judged once, and no copy "
                    "of a judged image is calibrated on",
                    printable(folder),
                    len(copies),
                )
            judged = round(len(files) * self.holdout)
            if judged >= len(files):
                raise InceptionDeployError(
                    f"{folder}: {setting('Int8Request.holdout')} {self.holdout:g} holds out all {len(files)} images "
                    f"and leaves none to calibrate on: a smaller {setting('Int8Request.holdout')}, or "
                    f"{setting('VerifyRequest.eval_data')}"
                )
            holdout = f"{setting('Int8Request.holdout')} {self.holdout:g}"
            copied = f" (and {len(copies)} copies of them)" if copies else ""
            where = f"{folder}: {len(files)} distinct images{copied} hold out {judged} at {holdout}"
            total = needed / self.holdout if needed is not None else math.inf
            more = f"{math.ceil(total)} images at this hold-out" if total < 1e9 else "more images"
        if judged == 0:
            raise InceptionDeployError(f"{where}: nothing to judge the budget on")
        if self.accept_unproven or (needed is not None and judged >= needed):
            return
        asked = f"a {self.max_drop:g}-point budget"
        if needed is None:
            why, more = f"{asked} is shown by no number of images", ""
        else:
            why, more = (
                f"{asked} needs at least {needed} judged images to be shown, even with none flipped",
                f"{more}, ",
            )
        raise InceptionDeployError(
            f"{where}, which show no budget under {smallest_shown(judged):.2f} points; {why} (the drop's 95% "
            f"upper bound decides): {more}a looser {setting('Int8Request.max_drop')}, or "
            f"{setting('Int8Request.accept_unproven')} to record the result as unproven"
        )

    def held_out(self, folder) -> list[Path]:
        """The images calibration must not see: those judged, and every copy of them."""
        return self.split(folder)[1]

    def split(self, folder) -> tuple[list[Path], list[Path]]:
        """(judged, held out): the distinct images the budget is judged on, spread over the
        folder, and those with every byte-for-byte copy of them (none when a labelled set judges)."""
        if self.labelled is not None:
            return [], []
        every = image_folder(folder).files
        files, copies = distinct_images(every)
        judged = spread(list(files), round(len(files) * self.holdout))
        chosen = set(judged)
        return judged, [f for f in every if copies.get(f, f) in chosen]


@dataclass(frozen=True)
class Trial:
    """One placement judged: the drop in points with its 95% interval on the runtime where it is
    worst, and the continuous measures there (mean KL of the softmax, nats; smallest logit cosine)."""

    float_layers: int
    drop: float
    interval: tuple[float, float]
    runtime: str
    kl: float
    cosine: float


@dataclass
class BudgetReport:
    max_drop: float
    judged_on: str
    images: int
    measure: str
    chosen: Trial  # the placement kept
    kept: list[str]  # module paths kept float, most sensitive first
    int8_macs: float  # share of the Convs' multiply-adds still in INT8
    int8_convs: float  # share of the Conv layers still in INT8
    runtimes: list[str] = field(default_factory=lambda: ["onnxruntime"])  # where each placement ran
    not_judged_on: list[str] = field(default_factory=list)  # runtimes the file is for that are not here
    accept_unproven: bool = False
    tried: list[Trial] = field(default_factory=list)
    seconds: float = 0.0
    ranking: dict | None = None  # _rank's: stored in the precision file for the next search to reuse

    @property
    def drop(self) -> float:
        return self.chosen.drop

    @property
    def interval(self) -> tuple[float, float]:
        return self.chosen.interval

    @property
    def proven(self) -> bool:
        """The budget is shown: the drop's 95% upper bound is within it."""
        return self.interval[1] <= self.max_drop

    @property
    def met(self) -> bool:
        """Shown, or (where an unproven result is accepted) met by the point estimate."""
        return self.proven or (self.accept_unproven and self.drop <= self.max_drop)

    @property
    def decides(self) -> str:
        return DECIDES_UNPROVEN if self.accept_unproven else DECIDES

    @property
    def verdict(self) -> str:
        if self.proven:
            return "within the budget"
        if self.met:
            return "NOT established (within the budget at the point estimate only; accepted as unproven)"
        return "NOT within the budget"

    def summary(self) -> str:
        low, high = self.interval
        shown = ", ".join(self.kept[:6]) + (f" and {len(self.kept) - 6} more" if len(self.kept) > 6 else "")
        missing = f"; not judged on {', '.join(self.not_judged_on)}" if self.not_judged_on else ""
        return (
            f"INT8 budget {counted(self.max_drop, 'point')} ({self.measure}, {self.images} images of "
            f"{self.judged_on}, on {' and '.join(self.runtimes)}{missing}; {self.decides} decides): drop "
            f"{self.drop:.2f} points (95% interval {low:.2f} to {high:.2f}; mean KL {self.chosen.kl:.2g}, min cosine "
            f"{self.chosen.cosine:.4f}, on {self.chosen.runtime}), {self.verdict}; "
            f"{counted(len(self.kept), 'layer')} float{': ' + shown if shown else ''}; "
            f"{self.int8_convs:.0%} of the Convs and {self.int8_macs:.1%} of their multiply-adds in INT8; "
            f"{len(self.tried)} placements tried in {self.seconds:.0f} s"
        )

    def draw(self, ax) -> None:
        """Each placement tried: its drop with the 95% interval against the layers kept float, the
        budget dashed, the one kept circled."""
        for runtime in sorted({t.runtime for t in self.tried}):
            trials = sorted((t for t in self.tried if t.runtime == runtime), key=lambda t: t.float_layers)
            x = [t.float_layers for t in trials]
            y = [t.drop for t in trials]
            error = [[t.drop - t.interval[0] for t in trials], [t.interval[1] - t.drop for t in trials]]
            ax.errorbar(x, y, yerr=error, fmt="o", capsize=4, label=f"drop, 95% interval ({runtime}, where worst)")
        ax.axhline(self.max_drop, linestyle="--", color="grey", label=f"budget {counted(self.max_drop, 'point')}")
        chosen = self.chosen
        ax.plot(
            [chosen.float_layers], [chosen.drop], "o", markersize=14, fillstyle="none", color="red",
            label=f"kept: {counted(chosen.float_layers, 'layer')} float, {self.verdict}",
        )  # fmt: skip
        ax.set_xlabel("layers kept float")
        ax.set_ylabel("top-1 drop against FP32, points")
        title = (
            f"INT8 budget search: {self.images} images of {self.judged_on}, {len(self.tried)} placements, "
            f"{self.decides} decides"
        )
        ax.set_title(fill(title, 110), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    def to_dict(self) -> dict:
        return {
            "max_drop": self.max_drop,
            "judged_on": self.judged_on,
            "images": self.images,
            "measure": self.measure,
            "decides": self.decides,
            "runtimes": self.runtimes,
            "not_judged_on": self.not_judged_on,
            "drop": self.drop,
            "interval": list(self.interval),
            "kl": self.chosen.kl,
            "min_cosine": self.chosen.cosine,
            "decided_on": self.chosen.runtime,
            "proven": self.proven,
            "accepted_unproven": self.met and not self.proven,
            "met": self.proven,  # shown; an accepted unproven result is not
            "kept_float": self.kept,
            "int8_macs": self.int8_macs,
            "int8_convs": self.int8_convs,
            "tried": [
                {"float_layers": t.float_layers, "drop": t.drop, "upper": t.interval[1], "runtime": t.runtime}
                for t in self.tried
            ],
            "seconds": self.seconds,
        }


def judging_runtimes(target: str) -> tuple[dict, list[str]]:
    """The runtimes the file is for that are here (name -> opener of a candidate file), and those
    that are not: ONNX Runtime for both targets (TensorRT's own kernels need a GPU; the engine's
    parity is checked where one is built), and OpenVINO too for the cpu target."""
    openers = {"onnxruntime": OnnxRuntimeBackend}
    missing = []
    if target == "cpu":
        if importlib.util.find_spec("openvino") is not None:
            from ..runtime.openvino_backend import OpenVINOBackend

            openers["openvino"] = lambda path: OpenVINOBackend(path, cache_dir=None)
        else:
            missing.append("openvino (not installed)")
    return openers, missing


def search(
    src,
    prepared,
    calibration: CalibrationCache,
    target: str,
    budget: Budget,
    folder,
    metadata: Metadata,
    layers: dict[str, list[str]],
    fixed: dict[str, str],
    convert=None,
    weight_bits: int | None = None,
    corrections: Corrections | None = None,
    progress: Progress | None = None,
    earlier_ranking: dict | None = None,
) -> tuple[dict[str, str], BudgetReport]:
    """The modules to keep float (module -> why; ``fixed`` ones always) and the report.
    ``metadata``: the FP32 file ``src``'s own (it is not parsed again);
    ``layers``: module path -> its quantizable nodes (``calibration.float_layers.quantizable_layers``);
    ``convert``: applied to each placement's ONNX proto before it runs (the FP16 remainder);
    ``corrections``: the bias shifts and weight rounding every placement gets (calibration.qdq);
    ``earlier_ranking``: the ranking an earlier search stored (``BudgetReport.ranking``, kept in
    the precision file), reused where it was made of the same calibration, images, float layers
    and corrections."""
    import onnx

    say = progress or silent
    start = time.perf_counter()
    judged_files, held = budget.split(folder)
    judged, labels, judged_on, measure = _judged_images(budget, folder, judged_files, metadata.preprocess)
    fp32 = OnnxRuntimeBackend(src, metadata=metadata)
    fp32_logits = _logits(fp32, judged)
    openers, missing = judging_runtimes(target)
    tried: dict[int, Trial] = {}
    order: list[str] = []  # modules, most sensitive first, once ranked

    def judged_drop(count: int) -> float:
        """What the search holds against the budget: the upper bound, or the point estimate of an
        accepted unproven result."""
        if count not in tried:
            float_nodes = _nodes([*fixed, *order[:count]], layers)
            with tempfile.TemporaryDirectory(prefix="inception-budget-") as tmp:
                path = Path(tmp) / "candidate.onnx"
                write_qdq(prepared, calibration, target, path, float_nodes, weight_bits, corrections)
                if convert is not None:
                    onnx.save(convert(onnx.load(str(path))), str(path))
                trials = [
                    _trial(len(fixed) + count, name, fp32_logits, _logits(open_(path), judged), labels)
                    for name, open_ in openers.items()
                ]
            tried[count] = max(trials, key=lambda t: (t.interval[1], t.drop))
            t = tried[count]
            say(
                f"  {counted(t.float_layers, 'layer')} float: drop {t.drop:.2f} points (upper {t.interval[1]:.2f}, "
                f"{t.runtime})"
            )
        t = tried[count]
        return t.drop if budget.accept_unproven else t.interval[1]

    within = counted(budget.max_drop, "point")
    decides = DECIDES_UNPROVEN if budget.accept_unproven else DECIDES
    say(f"searching the fewest float layers within {within} on {len(judged)} images ({measure}, {decides})...")
    errors: dict[str, float] = {}
    ranking = None
    count = 0  # the full INT8 first: when it holds, there is nothing to rank
    if judged_drop(0) > budget.max_drop:
        held_set = set(held)
        calibration_files = [f for f in image_folder(folder).files if f not in held_set]
        # the ranking's graph is the tensorrt placement: the cpu target's corrections are not its own
        own = corrections if target == "tensorrt" else None
        ranking = _rank(
            prepared, calibration, calibration_files, metadata.preprocess, layers, fixed, fp32, own, say,
            earlier_ranking,
        )  # fmt: skip
        errors = dict(ranking["layers"])
        order.extend(errors)
        # what the ranking's tensorrt placement does not quantize (the cpu target's Concats, sums,
        # ReLUs): float last, so that every layer float is the FP32 network
        tail = [module for module in layers if module not in fixed and module not in errors]
        order.extend(_changing(prepared, tail, layers, [*fixed, *order]))
        count = fewest(judged_drop, len(order), budget.max_drop)
        if count is None:  # every layer float misses too: the best seen; the caller reports failure
            count = min(tried, key=lambda k: (tried[k].interval[1], tried[k].drop, k))
    kept = dict(fixed)
    for rank, module in enumerate(order[:count], 1):
        kept[module] = f"--int8-max-drop {budget.max_drop:g}: " + (
            f"sensitivity rank {rank} (logits MSE alone {errors[module]:.3g})"
            if module in errors
            else f"float after the {len(errors)} ranked layers (not ranked: quantized on the {target} target only)"
        )
    macs = conv_macs(prepared, judged[:1])
    float_macs = sum(macs[node] for node in _nodes(kept, layers) if node in macs)
    report = BudgetReport(
        budget.max_drop,
        judged_on,
        len(judged),
        measure,
        tried[count],
        list(kept),
        1 - float_macs / max(sum(macs.values()), 1),
        1 - len(_nodes(kept, layers) & macs.keys()) / max(len(macs), 1),
        list(openers),
        missing,
        budget.accept_unproven,
        sorted(tried.values(), key=lambda t: t.float_layers),
        time.perf_counter() - start,
        ranking,
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


def _rank(prepared, calibration, files: list, config, layers, fixed, fp32, corrections, say, earlier=None) -> dict:
    """The modules not in ``fixed``, most sensitive first, with each one's logits error alone in
    INT8, measured on calibration ``files`` (the judged images must not choose the layers):
    ``{"key": ..., "layers": [[module, error], ...]}``, or ``earlier`` where its key is this one's."""
    chosen = spread(files, RANKING_IMAGES)
    key = _ranking_key(calibration, chosen, fixed, corrections)
    if isinstance(earlier, dict) and earlier.get("key") == key:
        say(f"reusing the ranking of the {len(earlier['layers'])} layers an earlier search stored (same calibration)")
        return earlier
    ranking = _decode(chosen, config)
    module_of = {node: module for module, nodes in layers.items() for node in nodes}
    what = f"ranking the quantized layers by the logits error of each alone in INT8 ({len(ranking)} images)"
    with stage(say, what), tempfile.TemporaryDirectory(prefix="inception-budget-") as tmp:
        # the tensorrt placement for either target: weights behind Q/DQ pairs can be read float again
        every = Path(tmp) / "every.onnx"
        write_qdq(prepared, calibration, "tensorrt", every, _nodes(fixed, layers), corrections=corrections)
        ranked = layer_sensitivity(every, fp32.infer(ranking), ranking, module_of)
    errors = {layer.module: layer.error for layer in reversed(ranked)}  # a module's largest
    order = dict.fromkeys(layer.module for layer in ranked if layer.module and layer.module not in fixed)
    return {"key": key, "layers": [[module, errors[module]] for module in order]}


def _ranking_key(calibration: CalibrationCache, images: list, fixed, corrections: Corrections | None) -> str:
    """What a ranking was made of: the calibration (which names the graph and preprocessing), the
    images it ran on (path, size, modification time), the layers already float, the corrections."""
    h = hashlib.sha256(json.dumps([calibration.digest, sorted(fixed), RANKING_IMAGES]).encode())
    for image in images:
        info = os.stat(image)
        h.update(f"{os.path.abspath(image)}\0{info.st_size}\0{info.st_mtime_ns}\0".encode("utf-8", "surrogateescape"))
    if corrections:
        corrections.digest(h)
    return h.hexdigest()


def _changing(prepared, tail: list[str], layers: dict[str, list[str]], before: list[str]) -> list[str]:
    """``tail``'s modules in order, but those that change nothing when kept float after ``before``
    and the earlier ones of ``tail`` (``qdq.float_changes_nothing``: on the cpu target, a ReLU whose
    Conv is already float), which are no float layer."""
    import onnx

    graph = onnx.load(str(prepared)).graph
    # every node the cpu target quantizes, those no module made included (they are never float)
    ops, head = set(quantized_op_types("cpu")), head_nodes(graph)
    quantized = {n.name for n in graph.node if n.op_type in ops and n.name not in head} - _nodes(before, layers)
    changing = []
    for module in tail:
        if not float_changes_nothing(graph, layers[module], quantized):
            changing.append(module)
            quantized -= set(layers[module])
    return changing


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


def _logits(backend, images: np.ndarray) -> np.ndarray:
    return np.concatenate([backend.infer(images[i : i + 32]) for i in range(0, len(images), 32)])


def _trial(float_layers: int, runtime: str, fp32: np.ndarray, int8: np.ndarray, labels) -> Trial:
    drop, interval = top1_drop(fp32.argmax(1), int8.argmax(1), labels)
    return Trial(float_layers, drop, interval, runtime, mean_kl(fp32, int8), float(cosines(fp32, int8).min()))


def top1_drop(fp32: np.ndarray, int8: np.ndarray, labels: np.ndarray | None) -> tuple[float, tuple[float, float]]:
    """Points of top-1 lost and its 95% interval: disagreement with FP32 (Wilson), or FP32's
    accuracy minus INT8's against labels, bounded by the share of images only one of them gets
    right (Wilson of each: the drop is at most what FP32 alone gets right, at least minus what
    INT8 alone does; sound at 0 such images, where the paired normal interval has width 0)."""
    n = len(fp32)
    if labels is None:
        disagree = int(np.sum(fp32 != int8))
        low, high = wilson(disagree, n)
        return 100 * disagree / n, (100 * low, 100 * high)
    only_fp32 = int(np.sum((fp32 == labels) & (int8 != labels)))
    only_int8 = int(np.sum((int8 == labels) & (fp32 != labels)))
    return 100 * (only_fp32 - only_int8) / n, (-100 * wilson(only_int8, n)[1], 100 * wilson(only_fp32, n)[1])
