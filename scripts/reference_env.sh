#!/usr/bin/env bash
# Install the reference implementations (torchvision, timm, Cadene pretrainedmodels,
# facenet-pytorch, and Keras 3 for its applications on the torch backend) into a side folder
# WITHOUT touching the project's torch, so that tests/test_reference_layouts.py and
# tests/test_keras.py can compare our networks with theirs:
#
#   scripts/reference_env.sh /tmp/inception-refs
#   INCEPTION_DEPLOY_REFERENCES=/tmp/inception-refs python -m pytest tests/test_reference_layouts.py
#
# torchvision has no CPU build on PyPI for every torch release; its pure-Python model code
# still runs on CPU torch once its compiled-op registrations are skipped (done below, only in
# that side folder). On a host with a matching torchvision, plain `pip install` of these is enough.
set -euo pipefail
target=${1:-/tmp/inception-refs}
mkdir -p "$target"
python -m pip install -q --no-deps --target "$target" torchvision==0.29.2 timm==1.0.31 huggingface_hub pyyaml \
    facenet-pytorch==2.6.0 pretrainedmodels==0.7.4 munch six tqdm requests urllib3 idna charset_normalizer certifi
# Keras 3 runs on the project's torch (KERAS_BACKEND=torch, no TensorFlow); its numpy and
# ml-dtypes are the project's own (onnx needs ml-dtypes), so they are not installed again here.
python -m pip install -q --no-deps --target "$target" keras==3.15.1 absl-py namex optree rich markdown-it-py mdurl pygments
echo "# skipped: compiled torchvision ops are not needed to build models" \
    > "$target/torchvision/_meta_registrations.py"
echo "reference implementations installed; run the tests with INCEPTION_DEPLOY_REFERENCES=$target"
