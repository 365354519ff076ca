import logging
import os
import sys

import pytest

# Reference implementations (torchvision, timm, ...) installed aside by scripts/reference_env.sh
if os.environ.get("INCEPTION_DEPLOY_REFERENCES"):
    sys.path.insert(0, os.environ["INCEPTION_DEPLOY_REFERENCES"])


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO, logger="inception_deploy")


@pytest.fixture(scope="session")
def built_models():
    """Each architecture built once per session (the seven together are ~200M parameters)."""
    from inception_deploy import create_model

    cache = {}

    def get(arch):
        if arch not in cache:
            cache[arch] = create_model(arch)
        return cache[arch]

    return get
