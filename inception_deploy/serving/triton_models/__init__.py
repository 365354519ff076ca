"""Model code that runs inside Triton's Python backend, copied into the repositories we write.

Nothing in the package imports these modules: they import ``triton_python_backend_utils``,
which only exists in the server's Python stub.
"""
