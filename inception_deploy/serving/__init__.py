"""Serving with NVIDIA Triton: write a model repository, start a local server, classify through it.

tritonclient (the ``triton`` extra) writes repositories and talks to servers; the ``serve`` extra
adds a CPU build of tritonserver for local serving. Both are imported only when used.
"""

from .client import TritonClient
from .repository import write_repository
from .server import TritonServer

__all__ = ["TritonClient", "TritonServer", "write_repository"]
