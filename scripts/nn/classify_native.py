#!/usr/bin/env python3
"""Native OpenVINO reference: classify images with the converted IR, with the preprocessing the
`classify` guest is to use (centre crop 224/256 of the short side, bicubic resize to 224,
(x - 127) / 128, RGB, NCHW). Prints the top 3 with softmax probabilities.

    classify_native.py [--precision f32|bf16|f16|auto] MODEL_DIR IMAGE...

The inference precision defaults to f32, as the node's models do, so the answer does not depend
on whether the CPU has bf16 (OpenVINO's CPU plugin picks bf16 by itself where it can).
"""

import argparse

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=["f32", "bf16", "f16", "auto"], default="f32")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("images", nargs="+")
    args = parser.parse_args()
    labels = (args.model_dir / "labels.txt").read_text().splitlines()
    config = {} if args.precision == "auto" else {"INFERENCE_PRECISION_HINT": args.precision}
    compiled = ov.Core().compile_model(args.model_dir / "model.xml", "CPU", config)
    print("precision", compiled.get_property("INFERENCE_PRECISION_HINT"), file=sys.stderr)
    for path in args.images:
        logits = compiled(preprocess(path))[0][0]
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        top = np.argsort(-probabilities)[:3]
        print(Path(path).name, [(labels[i], round(float(probabilities[i]), 3)) for i in top])


if __name__ == "__main__":
    main()
