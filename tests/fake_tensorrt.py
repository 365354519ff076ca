"""A small fake of the TensorRT Python API, in its 10.x and 11.x generations, that records
what the builder is asked to do. It checks wiring only; it is no evidence that a real build
works (no TensorRT runs on these machines)."""
import enum
import types


def make(generation: str, calls: list):
    """A module object standing in for ``tensorrt`` of ``generation`` "10" or "11"."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = {"10": "10.16.0", "11": "11.1.0"}[generation]

    # 11 dropped EXPLICIT_BATCH and moved STRONGLY_TYPED's value: code must look flags up by name
    members = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 5} if generation == "10" else {"STRONGLY_TYPED": 1}
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", members)
    builder_flags = {"VERSION_COMPATIBLE": 1, "REFIT": 2}
    if generation == "10":
        builder_flags.update(FP16=3, INT8=4, OBEY_PRECISION_CONSTRAINTS=5)
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", builder_flags)
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})
    trt.HardwareCompatibilityLevel = enum.IntEnum("HardwareCompatibilityLevel", {"NONE": 0, "AMPERE_PLUS": 1})

    class ILogger:
        class Severity(enum.IntEnum):
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self):
            pass

    trt.ILogger = ILogger

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Network:
        def __init__(self, flags):
            self.flags = flags
            self.inputs = []

        def get_input(self, i):
            return self.inputs[i]

    class Error:
        def node(self):
            return 7

        def node_operator(self):
            return "FancyOp"

        def node_name(self):
            return "/features/fancy"

        def desc(self):
            return "unsupported operator"

    class OnnxParser:
        fail = False

        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0

        def parse_from_file(self, path):
            calls.append(("parse_from_file", path))
            if OnnxParser.fail:
                self.num_errors = 1
                return False
            import onnx

            graph = onnx.load(path, load_external_data=False).graph
            dims = [d.dim_value if d.dim_value else -1 for d in graph.input[0].type.tensor_type.shape.dim]
            self.network.inputs.append(Tensor(graph.input[0].name, tuple(dims)))
            return True

        def get_error(self, i):
            return Error()

    trt.OnnxParser = OnnxParser

    class TimingCache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return self.data + b"+timings"

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.cache = [], [], None
            self.builder_optimization_level = None
            self.hardware_compatibility_level = None

        def set_memory_pool_limit(self, pool, size):
            calls.append(("set_memory_pool_limit", pool.name, size))

        def set_flag(self, flag):
            self.flags.append(flag.name)

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)

        def create_timing_cache(self, data):
            calls.append(("create_timing_cache", bytes(data)))
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache

        def get_timing_cache(self):
            return self.cache

    class Profile:
        def set_shape(self, name, low, opt, high):
            calls.append(("set_shape", name, low, opt, high))

    class Builder:
        fail = False

        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return Network(flags)

        def create_builder_config(self):
            self.config = Config()
            return self.config

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("build", sorted(config.flags), config.builder_optimization_level,
                          config.hardware_compatibility_level))
            if Builder.fail:
                self.logger.log(ILogger.Severity.ERROR, "out of memory while building")
                return None
            return b"PLAN" + bytes([network.flags])

    trt.Builder = Builder
    return trt


def make_cudart(gpu_name="NVIDIA H200", major=9, minor=0):
    """A stand-in for cuda-python's runtime module: enough for device queries."""
    cudart = types.ModuleType("cudart")

    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0

    cudart.cudaError_t = cudaError_t
    cudart.cudaGetDeviceCount = lambda: (cudaError_t.cudaSuccess, 1)
    props = types.SimpleNamespace(name=gpu_name.encode(), major=major, minor=minor)
    cudart.cudaGetDeviceProperties = lambda i: (cudaError_t.cudaSuccess, props)
    cudart.cudaGetErrorString = lambda err: (cudaError_t.cudaSuccess, b"error")
    return cudart
