#!/usr/bin/env python3
"""Native OpenVINO reference: classify images with the converted IR, with the preprocessing the
`classify` guest is to use (centre crop 224/256 of the short side, bicubic resize to 224,
(x - 127) / 128, RGB, NCHW). Prints the top 3 with softmax probabilities.

    classify_native.py MODEL_DIR IMAGE...
"""

import sys
from pathlib import Path

import numpy as np
import openvino as ov
from PIL import Image


def preprocess(path):
    image = Image.open(path).convert("RGB")
    width, height = image.size
    side = min(width, height) * 224 / 256
    left, top = (width - side) / 2, (height - side) / 2
    image = image.crop((round(left), round(top), round(left + side), round(top + side)))
    pixels = np.asarray(image.resize((224, 224), Image.BICUBIC), dtype=np.float32)
    return ((pixels - 127.0) / 128.0).transpose(2, 0, 1)[None]


def main():
    model_dir = Path(sys.argv[1])
    labels = (model_dir / "labels.txt").read_text().splitlines()
    compiled = ov.Core().compile_model(model_dir / "model.xml", "CPU")
    for path in sys.argv[2:]:
        logits = compiled(preprocess(path))[0][0]
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        top = np.argsort(-probabilities)[:3]
        print(Path(path).name, [(labels[i], round(float(probabilities[i]), 3)) for i in top])


if __name__ == "__main__":
    main()
