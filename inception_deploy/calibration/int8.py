"""What an INT8 export asks for, as one settings object validated once: ``Int8Request``.

The CLI builds it from its flags, ``deploy`` and ``export.precision.quantize`` take it whole; what
it holds is checked here, when it is made, and not again on the way down.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from ..errors import ConfigError, setting
from ..metadata import INT8_REMAINDERS, INT8_TARGETS
from .budget import Budget
from .float_layers import PrecisionFile, keep_float_patterns
from .policy import CalibrationRequest
from .qdq import check_weight_bits


def default_int8_target() -> str:
    """TensorRT's symmetric Q/DQ where TensorRT is installed, ONNX Runtime CPU's otherwise."""
    return "tensorrt" if importlib.util.find_spec("tensorrt") else "cpu"


@dataclass(frozen=True)
class Int8Request:
    """``<output>_int8_<target>.onnx`` (``..._fp16.onnx`` with an FP16 ``remainder``: the unquantized
    ops in FP16, tensorrt target), calibrated as ``calibration`` asks. ``target`` defaults to
    tensorrt where TensorRT is installed (or the remainder is FP16), else cpu. ``keep_float``:
    module-path globs or precision files of layers left float; ``weight_bits``: 7 or 8 for the cpu
    target. ``max_drop``: keep layers float, most sensitive first, until top-1 is within that many
    points of FP32 on images calibration did not see (a ``holdout`` share of its folder, or the
    verification's labelled images), shown by the drop's 95% upper bound; ``accept_unproven``: where
    those images are too few to show it, settle for the point estimate and record the result as
    unproven (calibration.budget). ``bias_correction``: each quantized Conv's bias corrected by the
    mean shift its own rounding causes, measured on calibration images (calibration.bias; needs the
    calibration folder); None: on for the cpu target with a calibration folder, where it measurably
    helps, off for tensorrt, where it did not (docs/precision.md). ``adaround``: each quantized
    Conv's weights rounded up or down by what its output needs (calibration.adaround; needs the
    calibration folder; opt-in: a fit per Conv). ``equalize``: channels a Conv reads brought to
    similar ranges where they lie far apart and that lowers its simulated error (calibration.equalize;
    needs the calibration folder; opt-in: no network measured so far has such channels). Validated when made."""

    calibration: CalibrationRequest = CalibrationRequest()
    target: str | None = None
    remainder: str = "fp32"
    keep_float: tuple[str, ...] = ()
    weight_bits: int | None = None
    max_drop: float | None = None
    holdout: float = 0.2
    accept_unproven: bool = False
    bias_correction: bool | None = None
    adaround: bool = False
    equalize: bool = False

    def __post_init__(self):
        target = self.target or ("tensorrt" if self.remainder == "fp16" else default_int8_target())
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "keep_float", tuple(str(v) for v in self.keep_float))
        if self.bias_correction and self.calibration.folder is None:
            raise ConfigError(
                f"{setting('Int8Request.bias_correction')} measures on calibration images: it needs "
                f"{setting('CalibrationRequest.folder')} (a cache alone holds none)"
            )
        if self.adaround and self.calibration.folder is None:
            raise ConfigError(
                f"{setting('Int8Request.adaround')} fits on calibration images: it needs "
                f"{setting('CalibrationRequest.folder')} (a cache alone holds none)"
            )
        if self.equalize and self.calibration.folder is None:
            raise ConfigError(
                f"{setting('Int8Request.equalize')} measures channel ranges on calibration images: it needs "
                f"{setting('CalibrationRequest.folder')} (a cache alone holds none)"
            )
        if self.bias_correction is None:  # where it measurably helps, and where there are images for it
            object.__setattr__(self, "bias_correction", target == "cpu" and self.calibration.folder is not None)
        if target not in INT8_TARGETS:
            raise ConfigError(f"unknown INT8 target {target!r}; choose one of: {', '.join(INT8_TARGETS)}")
        if self.remainder not in INT8_REMAINDERS:
            raise ConfigError(
                f"unknown INT8 remainder precision {self.remainder!r}; choose one of: {', '.join(INT8_REMAINDERS)}"
            )
        if self.remainder == "fp16" and target != "tensorrt":
            raise ConfigError(
                f"{setting('Int8Request.remainder')} fp16 is for {setting('Int8Request.target')} tensorrt, not "
                f"{target} (ONNX Runtime's CPU kernels have no FP16 arithmetic)"
            )
        check_weight_bits(target, self.weight_bits)
        if self.max_drop is not None and self.calibration.folder is None:
            raise ConfigError(
                f"{setting('Int8Request.max_drop')} calibrates anew and judges on held-out images: it needs "
                f"calibration images, {setting('CalibrationRequest.folder')}"
            )
        if self.accept_unproven and self.max_drop is None:
            raise ConfigError(
                f"{setting('Int8Request.accept_unproven')} is about {setting('Int8Request.max_drop')}'s verdict: "
                f"it needs {setting('Int8Request.max_drop')}"
            )

    @property
    def suffix(self) -> str:
        """What the INT8 file's name adds to the FP32 one's: ``_int8_cpu``, ``_int8_tensorrt_fp16``."""
        return f"_int8_{self.target}" + ("_fp16" if self.remainder == "fp16" else "")

    def float_patterns(self, arch: str) -> tuple[list[tuple[str, str]], list[PrecisionFile]]:
        """(module-path glob, why) for each layer ``keep_float`` asks to leave float, and the
        precision files among ``keep_float`` (placements of earlier exports asked for again)."""
        return keep_float_patterns(self.keep_float, arch)

    def budget(self, labelled: tuple | None = None) -> Budget | None:
        """The accuracy budget ``max_drop`` asks for, judged on ``labelled`` (files, class indices)
        when given, else on the held-out share of the calibration folder."""
        if self.max_drop is None:
            return None
        return Budget(self.max_drop, self.holdout, labelled, self.accept_unproven)
