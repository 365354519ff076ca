"""Tests against the REAL TensorRT and cuda-python bindings of one release per process.

``tests/test_tensorrt_bindings.py`` runs this folder once per release of ``bindings.MATRIX`` in
its own process (a process can load one TensorRT), with ``INCEPTION_DEPLOY_TRT_BINDINGS`` naming
the release; the normal test run does not collect it directly.
"""
