"""A stand-in ``tensorrt`` module built on the REAL bindings of one release.

Everything that needs no GPU is the real thing: enums, Dims, DataType, ``nptype``, ILogger (our
logger subclasses the real one). The objects TensorRT's factories make (Builder, OnnxParser,
network, builder config, optimization profile, timing cache, host memory, Runtime, engine,
execution context, parser errors) are strict stand-ins (``strict.Double``) whose every call is
bound against the real signatures. Their behaviour is a small model of TensorRT's documented
behaviour: the "plan" carries the ONNX and the build options, and the engine executes that ONNX
with ONNX Runtime on the host memory the cuda-python stand-in hands out, so buffers, copies,
shapes and batch splitting are checked numerically. What only a GPU proves stays unproven: that
real TensorRT builds these graphs, its kernels' numerics, asynchronous ordering on a stream.
"""

from __future__ import annotations

import json
import types
from importlib.machinery import ModuleSpec

import numpy as np
import onnx

from .strict import Double

PLAN_MAGIC = b"DOUBLE-PLAN\0"  # then the build's JSON header, a NUL, and the ONNX model
CACHE_MAGIC = b"DOUBLE-TIMING-CACHE\0"
# what the parser accepts: the ops our exports contain (onnx-tensorrt supports all of them)
SUPPORTED_OPS = {
    "Conv",
    "Relu",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Concat",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Sub",
    "Div",
    "Flatten",
    "Reshape",
    "BatchNormalization",
    "Cast",
    "QuantizeLinear",
    "DequantizeLinear",
    "Identity",
    "Constant",
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Pad",
    "Transpose",
    "Softmax",
    "Sigmoid",
    "Clip",
    "Slice",
    "Split",
    "ReduceMean",
    "Dropout",
}


def make(real, cudart) -> types.ModuleType:
    """The ``tensorrt`` stand-in for the real ``tensorrt_bindings`` module ``real``; ``cudart`` is
    the cuda-python stand-in whose memory the engines read and write."""
    trt = types.ModuleType("tensorrt")
    for name in dir(real):
        if not name.startswith("__"):
            setattr(trt, name, getattr(real, name))
    trt.__version__ = real.__version__
    trt.__spec__ = ModuleSpec("tensorrt", None)
    trt.__doc__ = __doc__
    severity = real.ILogger.Severity

    def stand_in(real_name):
        def register(cls):
            cls.REAL, cls.MODULE = getattr(real, real_name), trt
            cls.__name__ = cls.__qualname__ = real_name
            setattr(trt, real_name, cls)
            return cls

        return register

    @stand_in("IHostMemory")
    class HostMemory(Double, bytes):  # bytes only for the buffer protocol; bytes' methods stay hidden
        pass

    def host_memory(data: bytes):
        memory = bytes.__new__(HostMemory, data)
        object.__setattr__(memory, "nbytes", len(data))
        object.__setattr__(memory, "dtype", getattr(real.DataType, "UINT8", real.DataType.INT8))
        return memory

    @stand_in("ITensor")
    class Tensor(Double):
        def _init(self, name, shape, dtype):
            object.__setattr__(self, "name", name)
            object.__setattr__(self, "shape", real.Dims(shape))
            object.__setattr__(self, "dtype", dtype)

    @stand_in("INetworkDefinition")
    class Network(Double):
        def _init(self, flags):
            self._flags, self._inputs, self._outputs, self._onnx = flags, [], [], None
            if "STRONGLY_TYPED" in real.NetworkDefinitionCreationFlag.__members__:
                bit = 1 << int(real.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
                self._strongly_typed = bool(flags & bit) or int(real.__version__.split(".")[0]) >= 11
            else:
                self._strongly_typed = False

        @property
        def num_inputs(self):
            return len(self._inputs)

        @property
        def num_outputs(self):
            return len(self._outputs)

        def get_input(self, index):
            return self._inputs[index]

        def get_output(self, index):
            return self._outputs[index]

    @stand_in("ParserError")
    class ParserError(Double):
        def _init(self, node, op, node_name, desc):
            self._values = {"node": node, "node_operator": op, "node_name": node_name, "desc": desc}

        def node(self):
            return self._values["node"]

        def node_operator(self):
            return self._values["node_operator"]

        def node_name(self):
            return self._values["node_name"]

        def desc(self):
            return self._values["desc"]

        def code(self):
            return real.ErrorCode.UNSUPPORTED_NODE if hasattr(real, "ErrorCode") else 8

    @stand_in("OnnxParser")
    class OnnxParser(Double):
        def _init(self, network, logger):
            self._network, self._logger, self._errors = network, logger, []

        @property
        def num_errors(self):
            return len(self._errors)

        def get_error(self, index):
            return self._errors[index]

        def parse_from_file(self, model):
            with open(model, "rb") as f:
                return self.parse(f.read())

        def parse(self, model, path=None):
            try:
                proto = onnx.load_from_string(bytes(model))
            except Exception as e:  # noqa: BLE001 - protobuf decode errors
                self._fail(-1, "", "", f"failed to parse ONNX model: {e}")
                return False
            for i, node in enumerate(proto.graph.node):
                if node.op_type not in SUPPORTED_OPS:
                    self._fail(i, node.op_type, node.name, f"No importer registered for op: {node.op_type}")
                elif node.op_type in ("QuantizeLinear", "DequantizeLinear") and not _symmetric_int8(proto, node):
                    self._fail(
                        i,
                        node.op_type,
                        node.name,
                        "TensorRT only supports INT8/FP8 Q/DQ with zero points of 0 (symmetric)",
                    )
            if self._errors:
                return False
            net = self._network
            dtypes = {onnx.TensorProto.FLOAT: real.DataType.FLOAT, onnx.TensorProto.FLOAT16: real.DataType.HALF}
            initializers = {i.name for i in proto.graph.initializer}
            for value, into in [(v, net._inputs) for v in proto.graph.input if v.name not in initializers] + [
                (v, net._outputs) for v in proto.graph.output
            ]:
                tensor_type = value.type.tensor_type
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
                into.append(Tensor.__new__(Tensor))
                into[-1]._init(value.name, dims, dtypes[tensor_type.elem_type])
            net._onnx = proto.SerializeToString()
            return True

        def _fail(self, node, op, name, desc):
            error = ParserError.__new__(ParserError)
            error._init(node, op, name, desc)
            self._errors.append(error)

        def clear_errors(self):
            self._errors.clear()

    @stand_in("IOptimizationProfile")
    class Profile(Double):
        def _init(self):
            self._shapes = {}

        def set_shape(self, input, min, opt, max):  # noqa: A002 - the real keyword names
            low, mid, high = (tuple(int(d) for d in s) for s in (min, opt, max))
            if not all(a <= b <= c for a, b, c in zip(low, mid, high)):
                raise AssertionError(f"profile for {input}: min <= opt <= max violated")
            self._shapes[input] = (low, mid, high)

        def get_shape(self, input):  # noqa: A002
            return [real.Dims(s) for s in self._shapes[input]]

    @stand_in("ITimingCache")
    class TimingCache(Double):
        def _init(self, device, version, entries):
            self._device, self._version, self._entries = device, version, entries

        def serialize(self):
            header = {"device": self._device, "tensorrt": self._version, "entries": self._entries}
            return host_memory(CACHE_MAGIC + json.dumps(header).encode())

        def combine(self, input_cache, ignore_mismatch):
            if not ignore_mismatch and input_cache._device != self._device:
                return False
            self._entries += input_cache._entries
            return True

        def reset(self):
            self._entries = 0
            return True

    def this_device():
        return cudart._device["name"]

    @stand_in("IBuilderConfig")
    class BuilderConfig(Double):
        def _init(self, logger):
            self._logger, self._flags, self._pools, self._profiles, self._cache = logger, set(), {}, [], None
            object.__setattr__(self, "builder_optimization_level", 3)
            object.__setattr__(self, "hardware_compatibility_level", real.HardwareCompatibilityLevel.NONE)
            object.__setattr__(self, "profiling_verbosity", real.ProfilingVerbosity.LAYER_NAMES_ONLY)

        def set_memory_pool_limit(self, pool, pool_size):
            self._pools[pool] = int(pool_size)

        def get_memory_pool_limit(self, pool):
            return self._pools.get(pool, 0)

        def set_flag(self, flag):
            self._flags.add(flag)

        def clear_flag(self, flag):
            self._flags.discard(flag)

        def get_flag(self, flag):
            return flag in self._flags

        def add_optimization_profile(self, profile):
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def create_timing_cache(self, serialized_timing_cache):
            blob = bytes(serialized_timing_cache)
            cache = TimingCache.__new__(TimingCache)
            if not blob:
                cache._init(this_device(), real.__version__, 0)
                return cache
            if not blob.startswith(CACHE_MAGIC):
                self._logger.log(severity.ERROR, "Serialized timing cache is corrupt: bad magic")
                return None
            header = json.loads(blob[len(CACHE_MAGIC) :])
            cache._init(header["device"], header["tensorrt"], header["entries"])
            return cache

        def set_timing_cache(self, cache, ignore_mismatch):
            if not ignore_mismatch and (cache._device != this_device() or cache._version != real.__version__):
                self._logger.log(
                    severity.ERROR,
                    "Timing cache was created on a different device or TensorRT version; set ignore_mismatch to use it",
                )
                self._cache = None
                return False
            self._cache = cache
            return True

        def get_timing_cache(self):
            return self._cache

    @stand_in("Builder")
    class Builder(Double):
        def _init(self, logger):
            self._logger = logger

        def create_network(self, flags=0):
            network = Network.__new__(Network)
            network._init(flags)
            return network

        def create_builder_config(self):
            config = BuilderConfig.__new__(BuilderConfig)
            config._init(self._logger)
            return config

        def create_optimization_profile(self):
            profile = Profile.__new__(Profile)
            profile._init()
            return profile

        def build_serialized_network(self, network, config):
            if network._onnx is None:
                self._logger.log(severity.ERROR, "Network must have at least one output")
                return None
            dynamic = [t for t in network._inputs if -1 in tuple(t.shape)]
            profiled = {name for p in config._profiles for name in p._shapes}
            for tensor in dynamic:
                if tensor.name not in profiled:
                    self._logger.log(
                        severity.ERROR,
                        f"Network has dynamic or shape inputs, but no optimization "
                        f"profile has been defined (input {tensor.name})",
                    )
                    return None
            if config._cache is not None:
                config._cache._entries += 1
            flag = real.BuilderFlag.VERSION_COMPATIBLE
            header = {
                "tensorrt": real.__version__,
                "version_compatible": flag in config._flags,
                "hardware_compatibility": config.hardware_compatibility_level.name,
                "compute_capability": cudart._device["compute_capability"],
                "strongly_typed": network._strongly_typed,
                "flags": sorted(f.name for f in config._flags),
                "pools": {p.name: v for p, v in config._pools.items()},
                "opt_level": config.builder_optimization_level,
                "verbosity": config.profiling_verbosity.name,
                "profiles": [{k: v for k, v in p._shapes.items()} for p in config._profiles],
                "inputs": [(t.name, list(t.shape), t.dtype.name) for t in network._inputs],
                "outputs": [(t.name, list(t.shape), t.dtype.name) for t in network._outputs],
            }
            return host_memory(PLAN_MAGIC + json.dumps(header).encode() + b"\0" + network._onnx)

    @stand_in("Runtime")
    class Runtime(Double):
        def _init(self, logger):
            self._logger = logger
            object.__setattr__(self, "engine_host_code_allowed", False)

        def deserialize_cuda_engine(self, serialized_engine):
            blob = bytes(serialized_engine)
            if not blob.startswith(PLAN_MAGIC):
                self._logger.log(
                    severity.ERROR,
                    "IRuntime::deserializeCudaEngine: Error Code 1: Serialization "
                    "(Serialization assertion magicTagRead == kMAGIC_TAG failed.)",
                )
                return None
            header_bytes, _, model = blob[len(PLAN_MAGIC) :].partition(b"\0")
            header = json.loads(header_bytes)
            if header["tensorrt"] != real.__version__ and not header["version_compatible"]:
                self._logger.log(
                    severity.ERROR,
                    f"The engine plan file is not compatible with this version of "
                    f"TensorRT, expecting library version {real.__version__} got "
                    f"{header['tensorrt']}",
                )
                return None
            if header["version_compatible"] and not self.engine_host_code_allowed:
                self._logger.log(
                    severity.ERROR,
                    "Cannot deserialize engine with lean runtime: engine host code "
                    "is not allowed (set IRuntime::setEngineHostCodeAllowed)",
                )
                return None
            if (
                header["hardware_compatibility"] == "NONE"
                and header["compute_capability"] != cudart._device["compute_capability"]
            ):
                self._logger.log(severity.ERROR, "The engine plan file is generated on an incompatible device")
                return None
            engine = Engine.__new__(Engine)
            engine._init(header, model, self._logger)
            return engine

    @stand_in("ICudaEngine")
    class Engine(Double):
        def _init(self, header, model, logger):
            import onnxruntime as ort

            self._header, self._logger, self._model = header, logger, model
            self._tensors = {name: (real.TensorIOMode.INPUT, dims, dtype) for name, dims, dtype in header["inputs"]}
            self._tensors.update(
                {name: (real.TensorIOMode.OUTPUT, dims, dtype) for name, dims, dtype in header["outputs"]}
            )
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

        @property
        def num_io_tensors(self):
            return len(self._tensors)

        @property
        def num_optimization_profiles(self):
            return max(1, len(self._header["profiles"]))

        def get_tensor_name(self, index):
            return list(self._tensors)[index]

        def get_tensor_mode(self, name):
            return self._tensors[name][0] if name in self._tensors else real.TensorIOMode.NONE

        def get_tensor_dtype(self, name):
            return getattr(real.DataType, self._tensors[name][2])

        def get_tensor_shape(self, name):
            return real.Dims(self._tensors[name][1])

        def get_tensor_profile_shape(self, name, profile_index):
            shapes = self._header["profiles"][profile_index][name]
            return [real.Dims(s) for s in shapes]

        def create_engine_inspector(self):
            inspector = Inspector.__new__(Inspector)
            inspector._engine = self
            return inspector

        def create_execution_context(self, strategy=None):
            context = Context.__new__(Context)
            context._init(self)
            return context

    @stand_in("EngineInspector")
    class Inspector(Double):
        """Layer information in the JSON layout NVIDIA documents for the engine inspector: with
        DETAILED verbosity one object per layer (LayerType, Outputs with Format/Datatype), else
        names only. One layer per ONNX compute node; a Conv fed by DequantizeLinear runs int8."""

        def get_engine_information(self, format):  # noqa: A002 - the real keyword name
            engine = self._engine
            proto = onnx.load_from_string(engine._model)
            producers = {o: n.op_type for n in proto.graph.node for o in n.output}
            types = {
                v.name: v.type.tensor_type.elem_type
                for v in list(proto.graph.value_info) + list(proto.graph.input) + list(proto.graph.output)
            }
            formats = {
                onnx.TensorProto.FLOAT: "Row major linear FP32",
                onnx.TensorProto.FLOAT16: "Channel major FP16 format where channel % 8 == 0",
                onnx.TensorProto.INT8: "Row major Int8 format",
            }
            layers = []
            for node in proto.graph.node:
                if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant", "Identity"):
                    continue
                quantized = any(producers.get(i) == "DequantizeLinear" for i in node.input[:1])
                dtype = onnx.TensorProto.INT8 if quantized else types.get(node.output[0], onnx.TensorProto.FLOAT)
                layers.append(
                    {
                        "Name": node.name,
                        "LayerType": "Cast" if node.op_type == "Cast" else node.op_type,
                        "Outputs": [{"Name": node.output[0], "Format/Datatype": formats.get(dtype, "Unknown")}],
                    }
                )
            if engine._header["verbosity"] != "DETAILED":
                layers = [layer["Name"] for layer in layers]
            return json.dumps({"Layers": layers, "Bindings": [name for name in engine._tensors]})

    @stand_in("IExecutionContext")
    class Context(Double):
        def _init(self, engine):
            self._engine, self._shapes, self._addresses = engine, {}, {}

        def set_input_shape(self, name, shape):
            shape = tuple(int(d) for d in shape)
            low, _, high = (
                self._engine._header["profiles"][0][name]
                if self._engine._header["profiles"]
                else (self._engine._tensors[name][1],) * 3
            )
            if len(shape) != len(low) or not all(a <= s <= b for a, s, b in zip(low, shape, high)):
                self._engine._logger.log(
                    severity.ERROR,
                    f"IExecutionContext::setInputShape: Error Code 3: API "
                    f"Usage Error (shape {shape} for {name} is outside the "
                    f"profile {low}..{high})",
                )
                return False
            self._shapes[name] = shape
            return True

        def get_tensor_shape(self, name):
            mode, dims, _ = self._engine._tensors[name]
            if mode == real.TensorIOMode.INPUT:
                return real.Dims(self._shapes.get(name, dims))
            batch = next(iter(self._shapes.values()), (dims[0],))[0]
            return real.Dims([batch] + list(dims[1:]))

        def set_tensor_address(self, name, memory):
            if name not in self._engine._tensors:
                self._engine._logger.log(severity.ERROR, f"setTensorAddress: no tensor named {name}")
                return False
            self._addresses[name] = int(memory)
            return True

        def execute_async_v3(self, stream_handle):
            engine = self._engine
            if cudart._stream_valid(int(stream_handle)) is False:
                engine._logger.log(severity.ERROR, "execute_async_v3: invalid stream")
                return False
            feeds = {}
            for name, (mode, dims, dtype) in engine._tensors.items():
                if name not in self._addresses:
                    engine._logger.log(severity.ERROR, f"Address is not set for tensor {name}")
                    return False
                if mode == real.TensorIOMode.INPUT:
                    if -1 in dims and name not in self._shapes:
                        engine._logger.log(severity.ERROR, f"Input shape of {name} is not specified")
                        return False
                    shape = self._shapes.get(name, tuple(dims))
                    feeds[name] = cudart._device_array(
                        self._addresses[name], shape, real.nptype(getattr(real.DataType, dtype))
                    ).copy()
            outputs = engine._session.run(None, feeds)
            for (name, _), value in zip(
                [(n, t) for n, t in engine._tensors.items() if t[0] == real.TensorIOMode.OUTPUT], outputs
            ):
                target = cudart._device_array(self._addresses[name], value.shape, value.dtype)
                target[...] = value
            return True

    return trt


def _symmetric_int8(proto, node) -> bool:
    """Q/DQ TensorRT takes: an int8 zero point of 0 (or none)."""
    if len(node.input) < 3:
        return True
    inits = {i.name: i for i in proto.graph.initializer}
    zero = inits.get(node.input[2])
    if zero is None:
        return True
    array = onnx.numpy_helper.to_array(zero)
    return array.dtype == np.int8 and not array.any()
