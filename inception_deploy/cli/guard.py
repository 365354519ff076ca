"""What every command shares around its work: one line per error and the exit codes, a missing
optional dependency named with its extra, a standard output that cannot be written, signals that
unwind the work, and the package's log records as note:/warning: lines on stderr.

Exit codes: 0 success; 1 partly failed: an exported artifact failed its parity check (it is
kept for inspection) or some images could not be classified (each reported); 2 bad input
(unknown arch, unreadable weights or model, bad option values, unwritable output), reported on
one line; 3 a TensorRT engine was asked for (--engine yes, inception-build) but this machine has
no TensorRT or no GPU: everything else was written.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import signal
import sys
import threading

import click

from ..errors import InceptionDeployError, named_settings, printable
from ..progress import write_line

EXIT_PARTLY_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NO_ENGINE = 3


def one_line_errors(fn):
    """Our errors become one line on stderr and exit code 2, never a traceback; so do a missing
    optional dependency (with the extra that installs it) and a standard output that cannot be
    written (a full disk, a closed pipe). SIGTERM, SIGHUP and Ctrl-C unwind the work (temporary
    files and folders are removed, no destination is touched) and exit 128 + the signal number."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        interrupts = _Interrupts()
        try:
            interrupts.install()
            log_to_stderr()
            try:
                with named_settings(SETTING_FLAGS):
                    return fn(*args, **kwargs)
            except InceptionDeployError as e:
                interrupts.hold()
                fail(printable(e))
            except ModuleNotFoundError as e:
                module = (e.name or "").partition(".")[0]
                if module not in _EXTRAS:
                    raise
                interrupts.hold()
                command = click.get_current_context().command_path
                fail(f"{command} needs {module}: {install_hint(module)}")
            except OSError as e:
                if not _stdout_broken(e):
                    raise
                interrupts.hold()
                fail(f"standard output: cannot write ({e.strerror}); the output is incomplete")
        except KeyboardInterrupt:
            interrupts.hold()
            signum = interrupts.signum or signal.SIGINT
            click.echo(f"error: interrupted by {signal.Signals(signum).name}; nothing was left half-written", err=True)
            sys.exit(128 + signum)
        finally:
            interrupts.restore()

    return wrapper


# The flag of each setting that errors below the CLI name by its API name (errors.setting); a
# test keeps this table complete.
SETTING_FLAGS = {
    "arch": "--arch",
    "weights": "--weights",
    "class_map": "--class-map",
    "ground_truth": "--ground-truth",
    "resize": "--resize",
    "crop_pct": "--crop-pct",
    "plot": "--plot",
    "model": "--model",
    "replace": "--force",
    "resume": "--resume",
    "max_batch": "--max-batch",
    "version_compatible": "--version-compatible",
    "batch_sizes": "--batch-sizes",
    "device": "--device",
    "precision": "--precision",
    "torch_arch": "--torch-arch",
    "layerwise": "--layerwise",
    "save_limit": "--save-outputs-limit",
    "sensitivity": "--sensitivity",
    "onnx_files": "--onnx",
    "samples": "--calib-samples",
    "ExportRequest.output": "--output",
    "ExportRequest.batch": "--batch",
    "ExportRequest.max_batch": "--max-batch",
    "ExportRequest.opset": "--opset",
    "CalibrationRequest.folder": "--calib-dir",
    "CalibrationRequest.cache": "--calib-cache",
    "Int8Request.target": "--int8-target",
    "Int8Request.remainder": "--int8-remainder",
    "Int8Request.weight_bits": "--int8-weight-bits",
    "Int8Request.keep_float": "--int8-keep-float",
    "Int8Request.max_drop": "--int8-max-drop",
    "Int8Request.holdout": "--int8-holdout",
    "Int8Request.accept_unproven": "--int8-accept-unproven",
    "Int8Request.bias_correction": "--int8-bias-correction",
    "Int8Request.adaround": "--int8-adaround",
    "Int8Request.equalize": "--int8-equalize",
    "VerifyRequest.eval_data": "--eval-data",
    "RayOptions.address": "--ray-address",
}


# the extra that installs each optional dependency a command may import
_EXTRAS = {
    "torch": "export",
    "onnx": "export",
    "onnxscript": "export",
    "safetensors": "export",
    "h5py": "export",
    "polygraphy": "export",
    "matplotlib": "bench",
    "openvino": "openvino",
    "tritonclient": "triton",
    "ray": "ray",
    "pyarrow": "ray",
}


# packages that install alone, with no pins of ours: the smallest fix is the package itself
_ALONE = {"onnx", "onnxscript", "safetensors", "h5py", "polygraphy", "matplotlib", "openvino", "tritonclient"}


def install_hint(module: str) -> str:
    """The smallest install that brings ``module``: itself where it installs alone, else its extra
    (torch: the CPU build first; ray: with the pins that keep numpy 1 and Triton working)."""
    if module in _ALONE:
        return f"pip install {module} (or the extra 'inception-deploy[{_EXTRAS[module]}]')"
    return f"pip install 'inception-deploy[{_EXTRAS[module]}]'"


def fail(message: str):
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _stdout_broken(e: OSError) -> bool:
    """Whether ``e`` came from click.echo writing standard output (every result line goes through
    it). Its unwritten bytes are then sent to /dev/null, so the interpreter's exit does not fail
    on them too."""
    tb, from_echo = e.__traceback__, False
    while tb is not None:
        frame = tb.tb_frame
        if (
            frame.f_code is click.echo.__code__
            and not frame.f_locals.get("err")
            and frame.f_locals.get("file") in (None, sys.stdout)
        ):
            from_echo = True
        tb = tb.tb_next
    if not from_echo or e.filename is not None:
        return False
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):  # not a real file (a test runner's buffer)
        pass
    return True


class _Interrupts:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt once, so the work unwinds through its
    cleanups; later signals are ignored while it does (hold), and the previous handlers come back
    at the end. A KeyboardInterrupt that lands in a finalizer (``__del__``, a weakref callback) is
    swallowed by Python with a traceback printed: it is caught here instead and delivered again."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.signum = None
        self.raised = False
        self.previous: dict = {}
        self.previous_hook = None

    def install(self) -> None:
        self.previous_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        for sig in self.SIGNALS:
            self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.raised:
            return
        self.signum = self.signum or signum
        self.raised = True
        raise KeyboardInterrupt

    def _unraisable(self, info) -> None:
        if isinstance(info.exc_value, KeyboardInterrupt) and self.signum is not None:
            self.raised = False  # swallowed in a finalizer: signal again, outside it, to the main thread
            # (a process-wide kill may land on another thread and leave the main one asleep)
            threading.Timer(0.01, signal.pthread_kill, (threading.main_thread().ident, self.signum)).start()
            return
        self.previous_hook(info)

    def hold(self) -> None:
        self.raised = True

    def restore(self) -> None:
        self.hold()
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self.previous_hook is not None:
            sys.unraisablehook = self.previous_hook


class _PrefixedFormatter(logging.Formatter):
    """``note:`` / ``warning:`` / ``error:`` lines, escaped so each record stays one line."""

    PREFIXES = {logging.DEBUG: "debug", logging.INFO: "note", logging.WARNING: "warning"}

    def format(self, record):
        return f"{self.PREFIXES.get(record.levelno, 'error')}: {printable(record.getMessage())}"


class _StderrHandler(logging.Handler):
    """Writes each record as a line of its own on whatever sys.stderr is then (click's test
    runner swaps it), clear of any progress bar drawn there."""

    def emit(self, record):
        try:
            write_line(self.format(record))
        except Exception:  # as logging's own handlers: a failed log line never ends the command
            self.handleError(record)


def log_to_stderr() -> None:
    """The package's log records (notes and warnings) on stderr, once per process."""
    logger = logging.getLogger("inception_deploy")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_PrefixedFormatter())
        logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
