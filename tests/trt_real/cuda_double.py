"""A stand-in ``cuda.bindings.runtime`` built on the REAL cuda-python module of one release.

Enums, ``cudaStream_t``, ``cudaDeviceProp`` and ``cudaGetErrorString`` are the real ones. The calls
our backend makes are bound against the real functions' signatures (``inspect.signature`` of the
Cython functions) and return ``(cudaError_t, value)`` tuples as the real ones do. Host memory
stands in for device memory: every allocation is registered, copies are checked against the
allocations they touch (direction, bounds, live pointers) and done with memmove.
"""

from __future__ import annotations

import ctypes
import inspect
import types

import numpy as np

DEVICE = {"name": "Stand-in GPU (host memory)", "compute_capability": "9.0"}


def make(real) -> types.ModuleType:
    rt = types.ModuleType("cuda.bindings.runtime")
    for name in dir(real):
        if not name.startswith("__"):
            setattr(rt, name, getattr(real, name))
    success = real.cudaError_t.cudaSuccess
    allocations = {}  # pointer -> (ctypes buffer, size, "device" | "host")
    streams = set()
    rt._device = dict(DEVICE)

    def checked(function):
        signature = inspect.signature(getattr(real, function.__name__))

        def call(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)  # TypeError as the real function raises
            for name, value in bound.arguments.items():
                annotation = signature.parameters[name].annotation
                if (
                    isinstance(annotation, str)
                    and hasattr(real, annotation)
                    and hasattr(getattr(real, annotation), "__members__")
                    and not isinstance(value, getattr(real, annotation))
                ):
                    raise TypeError(f"Argument '{name}' is not instance of type (expected {annotation})")
            return function(*bound.args)

        call.__name__ = function.__name__
        setattr(rt, function.__name__, call)
        return call

    def allocate(size, kind):
        buffer = ctypes.create_string_buffer(max(int(size), 1))
        pointer = ctypes.addressof(buffer)
        allocations[pointer] = (buffer, int(size), kind)
        return pointer

    def region(pointer, count, kind):
        """The allocation holding [pointer, pointer + count) of this kind, or an AssertionError."""
        pointer = int(pointer)
        for start, (_, size, where) in allocations.items():
            if start <= pointer and pointer + count <= start + size:
                assert where == kind, f"{kind} pointer expected at {pointer:#x}, got {where} memory"
                return
        raise AssertionError(f"{count} bytes at {pointer:#x} are outside every live {kind} allocation")

    @checked
    def cudaGetDeviceCount():
        return success, 1

    @checked
    def cudaGetDeviceProperties(device):
        props = real.cudaDeviceProp()
        name = rt._device["name"].encode()
        props.name = name + b"\0" * (256 - len(name))
        props.major, props.minor = (int(v) for v in rt._device["compute_capability"].split("."))
        return success, props

    @checked
    def cudaDriverGetVersion():
        return success, 13000

    @checked
    def cudaRuntimeGetVersion():
        return success, 13000

    @checked
    def cudaMalloc(size):
        return success, allocate(size, "device")

    @checked
    def cudaMallocHost(size):
        return success, allocate(size, "host")

    @checked
    def cudaFree(devPtr):
        assert allocations.pop(int(devPtr))[2] == "device", "cudaFree of host memory"
        return (success,)

    @checked
    def cudaFreeHost(ptr):
        assert allocations.pop(int(ptr))[2] == "host", "cudaFreeHost of device memory"
        return (success,)

    @checked
    def cudaStreamCreate():
        stream = real.cudaStream_t(len(streams) + 1000)
        streams.add(int(stream))
        return success, stream

    @checked
    def cudaStreamSynchronize(stream):
        assert int(stream) in streams, "synchronizing a stream that was never created"
        return (success,)

    @checked
    def cudaStreamDestroy(stream):
        streams.discard(int(stream))
        return (success,)

    @checked
    def cudaMemcpyAsync(dst, src, count, kind, stream):
        kinds = real.cudaMemcpyKind
        source, target = {
            kinds.cudaMemcpyHostToDevice: ("host", "device"),
            kinds.cudaMemcpyDeviceToHost: ("device", "host"),
            kinds.cudaMemcpyDeviceToDevice: ("device", "device"),
        }[kind]
        region(src, int(count), source)
        region(dst, int(count), target)
        assert int(stream) in streams, "copy on a stream that was never created"
        ctypes.memmove(int(dst), int(src), int(count))
        return (success,)

    def device_array(pointer, shape, dtype):
        """The numpy view of device memory an engine reads or writes (bounds-checked)."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        region(pointer, nbytes, "device")
        return np.frombuffer((ctypes.c_byte * nbytes).from_address(int(pointer)), dtype=dtype).reshape(shape)

    rt._device_array = device_array
    rt._stream_valid = lambda handle: handle in streams
    rt._allocations = allocations
    return rt
