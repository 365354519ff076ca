"""Command line: a thin layer over the Python API, one module per command group (parse, call the
API, print). ``inception <command>`` and the console scripts ``inception-<command>`` are the
same commands; ``guard`` says what the exit codes mean."""

from __future__ import annotations

import click

from .. import __version__
from .bench import bench_command
from .build import build_command, calibrate_command
from .doctor import doctor_command
from .eval import eval_command
from .export import export_command
from .parity import parity_command
from .run import run_command
from .serve import serve_command, triton_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="inception-deploy")
def main():
    """inception-deploy: export, verify and run image classifiers (the Inception family, ResNet, ResNeXt,
    SE-ResNet, DenseNet, Res2Net, ResNeSt) on ONNX Runtime, OpenVINO, TensorRT and Triton."""


COMMANDS = (
    export_command,
    build_command,
    run_command,
    calibrate_command,
    parity_command,
    bench_command,
    doctor_command,
    triton_command,
    serve_command,
    eval_command,
)
for _command in COMMANDS:
    main.add_command(_command)


def _console_script(command):
    """The entry point of console script ``inception-<command>`` (same command as ``inception <command>``)."""
    return lambda: command(prog_name=f"inception-{command.name}")


export_main = _console_script(export_command)
build_main = _console_script(build_command)
run_main = _console_script(run_command)
calibrate_main = _console_script(calibrate_command)
parity_main = _console_script(parity_command)
bench_main = _console_script(bench_command)
doctor_main = _console_script(doctor_command)
triton_main = _console_script(triton_command)
serve_main = _console_script(serve_command)
eval_main = _console_script(eval_command)
