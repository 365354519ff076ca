import logging
import os
import sys

import pytest

# tests/reference_transforms.py is imported by tests as a plain module
sys.path.insert(0, os.path.dirname(__file__))
# Reference implementations (torchvision, timm, ...) installed aside by scripts/reference_env.sh
if os.environ.get("INCEPTION_DEPLOY_REFERENCES"):
    sys.path.insert(0, os.environ["INCEPTION_DEPLOY_REFERENCES"])

# The suite runs on pytest-xdist workers (pyproject: -n auto --dist loadfile). Each worker gets its
# share of the cores, passed to PyTorch, ONNX Runtime and OpenVINO through $OMP_NUM_THREADS
# (cpu.thread_cap): with one thread per core each, two workers on 2 cores made every test ~1.8x
# slower. An $OMP_NUM_THREADS set before the run is kept.
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    share = CORES // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, share)))


def pytest_xdist_auto_num_workers(config):
    """-n auto: $PYTEST_XDIST_AUTO_NUM_WORKERS if set, else one worker per core this process may use,
    at most 4 (a worker can hold ~7 GB, and workers that need the same shared artifact wait for the
    one making it)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    return max(1, min(4, CORES))


# Test files, longest first: a worker's seconds with one thread each on 2 cores (a fresh clone's
# .ci/run, 2026-12-07, with the reference implementations; `-p` a timeline plugin). xdist's
# loadfile hands a free worker the next file in collection order (pyproject:
# --no-loadscope-reorder, instead of the files with most tests first), so the long files start
# first and the short ones fill in at the end: in that run test_reference_layouts, not yet named
# here, started last and ran 47 s after the other worker had finished. Files not named follow in
# their usual order.
LONGEST_FIRST = (
    "test_export.py",  # 339 s
    "test_int8_control.py",  # 196
    "test_ray.py",  # 150
    "test_backbones.py",  # 145
    "test_keras.py",  # 135 with Keras, 1 without
    "test_precision.py",  # 129
    "test_qdq_placement.py",  # 104
    "test_pipeline.py",  # 63
    "test_reference_layouts.py",  # 61 with the references, 0 without
    "test_int8_budget.py",  # 60
    "test_parity_bench.py",  # 55
    "test_tensorrt_bindings.py",  # 49
    "test_weights.py",  # 29
    "test_hostile_inputs.py",  # 29
    "test_readme.py",  # 28
    "test_hostile_surfaces.py",  # 27
    "test_models.py",  # 26
    "test_openvino.py",  # 23
    "test_serving.py",  # 21
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


# tests/trt_real runs once per TensorRT release, in its own process (tests/test_tensorrt_bindings.py)
collect_ignore = [] if os.environ.get("INCEPTION_DEPLOY_TRT_BINDINGS") else ["trt_real"]


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO, logger="inception_deploy")


@pytest.fixture(scope="session", autouse=True)
def _shared_random_init_statistics(once):
    """A random-init network's batch-norm statistics (``create_model`` without weights: forward
    passes at full size, 46 s for the 23 architectures on one core) computed by one worker per run:
    ``checkpoints.zoo`` keeps them per process, so each worker building the same architectures
    computed them again."""
    from inception_deploy.checkpoints import zoo

    class Shared(dict):
        def get(self, key, default=None):
            if key not in self:

                def make(folder):
                    mine = zoo._RANDOM_INIT_STATISTICS
                    zoo._RANDOM_INIT_STATISTICS = {}
                    try:
                        zoo.create_model(*key)  # computes and keeps them in the plain dict
                        return zoo._RANDOM_INIT_STATISTICS[key]
                    finally:
                        zoo._RANDOM_INIT_STATISTICS = mine

                self[key] = once("statistics-" + "-".join(map(str, key)), make)
            return super().get(key, default)

    zoo._RANDOM_INIT_STATISTICS = Shared()
    yield
    zoo._RANDOM_INIT_STATISTICS = {}


@pytest.fixture(scope="session")
def built_models():
    """Each architecture built once per session (the seven together are ~200M parameters)."""
    from inception_deploy import create_model, get_arch

    cache = {}

    def get(arch):
        arch = get_arch(arch).name  # an alias builds the same model once
        if arch not in cache:
            cache[arch] = create_model(arch)
        return cache[arch]

    return get


@pytest.fixture(scope="session")
def once(tmp_path_factory, worker_id):
    """``once(key, make)``: ``make(folder)`` run by one pytest-xdist worker of this run, in a folder
    of its own that every worker sees; the others wait for it and get its pickled result. So each
    artifact is made once per run however the tests are spread over workers."""
    import pickle
    import shutil

    from filelock import FileLock

    from inception_deploy.fileio import Kind, atomic_path

    base = tmp_path_factory.getbasetemp()
    shared = (base if worker_id == "master" else base.parent) / "shared"
    shared.mkdir(exist_ok=True)

    def get(key, make):
        result = shared / f"{key}.pickle"
        with FileLock(shared / f"{key}.lock"):
            if not result.exists():  # also after a make() that failed: the next caller tries again
                folder = shared / key
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                data = pickle.dumps(make(folder))
                with atomic_path(result, Kind("a shared test result", lambda path: True)) as partial:
                    partial.write_bytes(data)
        return pickle.loads(result.read_bytes())

    return get


@pytest.fixture(scope="session")
def exported(once, built_models):
    """Every architecture exported once per run with default options (dynamic batch, parity on),
    each in a folder of its own; tests share these files (the eager model is not kept: use
    ``built_models``, the same weights from the fixed seed)."""
    import dataclasses

    from inception_deploy import get_arch
    from inception_deploy.export import export_onnx

    def get(arch):
        arch = get_arch(arch).name

        def make(folder):
            return dataclasses.replace(export_onnx(built_models(arch), folder / f"{arch}.onnx"), model=None)

        return once(f"onnx-{arch}", make)

    return get


@pytest.fixture(scope="session")
def trained(once):
    """The trained-head classifier (tests/trained_classifier.py), built and exported once per run:
    its model, preprocessing config and FP32 ONNX (opset 17, parity checked). Tests write what
    they derive from it into folders of their own."""

    def make(folder):
        import trained_classifier as tc

        from inception_deploy.export import export_onnx

        model, config = tc.build()
        fp32 = export_onnx(model, folder / "small.onnx", opset=17, preprocess=config).path
        return {"model": model, "config": config, "fp32": fp32}

    return once("trained", make)


@pytest.fixture(scope="session")
def v1_opset17(once):
    """inception-export --arch v1 --opset 17 with no weights (random init from the fixed seed), once per
    run: the TorchScript exporter's file (tests that edit it work on a copy)."""
    from inception_deploy.export import export_onnx

    def make(folder):
        return export_onnx("v1", folder / "googlenet.onnx", opset=17, check_parity=False).path

    return once("v1_opset17", make)
