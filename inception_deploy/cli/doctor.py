"""inception-doctor: what this machine can run."""

from __future__ import annotations

import json

import click

from ..doctor import as_json as facts_json
from ..doctor import diagnose
from ..errors import printable
from .guard import one_line_errors
from .options import command, option
from .output import opens_with


@command("doctor")
@option("--json", "as_json", is_flag=True, group="Output", help="The facts as one JSON list on stdout.")
@one_line_errors
@opens_with("looking at this machine...")
def doctor_command(as_json):
    """Say what this machine can do: Python, torch, ONNX Runtime (providers that really load),
    TensorRT, cuda-python, GPU and driver, and which extra to install for what is missing."""
    facts = diagnose()
    if as_json:
        click.echo(json.dumps(facts_json(facts), indent=1))
    else:
        for fact in facts:
            click.echo(printable(fact.line()))
