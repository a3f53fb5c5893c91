"""Writes small NCNN models that use the layer types batchwise imports beyond the built-in networks
(Concat, Pooling, Sigmoid, Padding, standalone ReLU and PReLU), with ncnn's own output for a random
input, into tests/fixtures/ncnn/ (`<name>.param`, `.bin`, `.in.f32`, `.out.f32`, `.json`).

Run from the repository root (needs `pip install ncnn numpy`):
    python3 tests/reference/make_ncnn_layers.py
"""
import json
import pathlib
import struct

import ncnn
import numpy as np

OUT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "ncnn"
RNG = np.random.default_rng(7)
C, H, W = 3, 9, 11

MODELS = {
    # Max pooling with "full" padding (a partial last window), average pooling with pads that do
    # not count, a channel Concat, Sigmoid, reflect Padding and a standalone leaky ReLU.
    "pool_concat_pad": (
        [
            f"Input data 0 1 data 0={W} 1={H} 2={C}",
            "Split split 1 2 data d0 d1",
            "Convolution conv 1 1 d0 c0 0=4 1=3 4=1 5=1 6=108",
            "Pooling maxpool 1 1 c0 p0 0=0 1=2 2=2 5=0",
            "Pooling avgpool 1 1 d1 p1 0=1 1=3 2=2 3=1 5=1 6=0",
            "Concat cat 2 1 p0 p1 cat 0=0",
            "Sigmoid sig 1 1 cat sig",
            "Padding pad 1 1 sig pad 0=1 1=2 2=0 3=1 4=2",
            "ReLU relu 1 1 pad out 0=0.1",
        ],
        [("conv", 4 * C * 9, 4)],
    ),
    # Constant padding of height, width and channels, then global average pooling.
    "pad_global_pool": (
        [
            f"Input data 0 1 data 0={W} 1={H} 2={C}",
            "Padding pad 1 1 data pad 0=2 1=0 2=1 3=3 4=0 5=0.5 7=1 8=0",
            "Pooling gap 1 1 pad out 0=1 4=1",
        ],
        [],
    ),
    # Edge padding, a standalone PReLU, and a Concat on the height axis.
    "edge_prelu_concat": (
        [
            f"Input data 0 1 data 0={W} 1={H} 2={C}",
            "Padding pad 1 1 data pad 0=1 1=1 2=1 3=1 4=1",
            f"PReLU prelu 1 1 pad pr 0={C}",
            "Split split 1 2 pr a b",
            "Concat cat 2 1 a b out 0=1",
        ],
        [("prelu", C, 0)],
    ),
}


def weights(spec):
    """The .bin: per weighted layer, ncnn's 4-byte float32 flag and the weights, then the bias."""
    out = b""
    for kind, n_weights, n_bias in spec:
        w = RNG.uniform(-0.5, 0.5, n_weights).astype(np.float32)
        if kind == "conv":
            out += struct.pack("<I", 0) + w.tobytes()
            out += RNG.uniform(-0.2, 0.2, n_bias).astype(np.float32).tobytes()
        else:  # PReLU slopes: raw floats
            out += w.tobytes()
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (lines, spec) in MODELS.items():
        blobs = {b for line in lines for b in line.split()[4:] if "=" not in b}
        param = "7767517\n%d %d\n%s\n" % (len(lines), len(blobs), "\n".join(lines))
        (OUT / f"{name}.param").write_text(param)
        (OUT / f"{name}.bin").write_bytes(weights(spec))
        x = RNG.uniform(-1, 1, (C, H, W)).astype(np.float32)
        net = ncnn.Net()
        net.opt.use_vulkan_compute = False
        net.opt.use_fp16_packed = False
        net.opt.use_fp16_storage = False
        net.opt.use_fp16_arithmetic = False
        net.opt.use_bf16_storage = False
        net.opt.use_packing_layout = False
        net.load_param(str(OUT / f"{name}.param"))
        net.load_model(str(OUT / f"{name}.bin"))
        ex = net.create_extractor()
        ex.input("data", ncnn.Mat(x))
        ret, y = ex.extract("out")
        assert ret == 0, name
        y = np.array(y, dtype=np.float32)
        (OUT / f"{name}.in.f32").write_bytes(x.tobytes())
        (OUT / f"{name}.out.f32").write_bytes(y.tobytes())
        (OUT / f"{name}.json").write_text(json.dumps({"input": [C, H, W], "output": list(y.shape)}))
        print(name, y.shape)


if __name__ == "__main__":
    main()
