"""Builds a user-style ONNX model that only the static lowering takes, and its onnxruntime output
on tests/fixtures/photo-60x44.png, into tests/fixtures/user/.

`pixel_shuffle_2x.onnx`: a 3x3 convolution to 12 channels, then a 2x pixel shuffle written the way
PyTorch exports it with free input sizes — Shape / Gather / Concat arithmetic feeding 6-D Reshape
and Transpose nodes — then a Sigmoid. Its input size is symbolic, so batchwise lowers it with every
shape fixed at one tile size. The reference pads the photo by 16 px of edge (the tiler's context),
as tests/reference/make_reference.py does, and writes planar float32 [3, 88, 120].

`wild_upscaler_4x.onnx`: a 4x upscaler built the way upscalers shipped for the web and phones
are (ESRGAN variants): a 5x5 first convolution, two dense blocks (each convolution reads the
concatenation of everything before it in the block; a 1x1 convolution closes the block, scaled by
0.2 and added to its input), a 1x1 convolution, a nearest 4x Resize, two 3x3 convolutions at 4x
(the last with 3 output channels), then x * 0.5 + 0.5 clipped to [0, 1] (an elementwise chain).
Free input size: batchwise lowers it once for every tile size. Its reference is the same photo
with 8 px of context, planar float32 [3, 176, 240].

`wild_restorer_1x.onnx`: a 1x restorer built the way NAFNet (a popular denoise / deblur model)
exports: two blocks of a layer norm over the channels written out op by op (ReduceMean, Sub,
Pow, ReduceMean, Add, Sqrt, Div, then a per-channel scale and shift), a 1x1 convolution to twice
the channels, a depthwise 3x3, a SimpleGate (Split in two halves, Mul), a channel attention
(GlobalAveragePool, 1x1, Mul), a 1x1, a per-channel scale added back; then the same norm, 1x1,
gate and 1x1 as a feed-forward half; a last 3x3 to 3 channels added to the input. Free input
size. Its reference is onnxruntime's output for a batch of two: the photo and the photo at half
brightness, planar float32 [2, 3, 44, 60] (no tiling: the channel attention's mean over the
whole map makes tiles differ).

`wild_convnext_1x.onnx`: a 1x restorer of ConvNeXt blocks, exported the way PyTorch writes them:
a 3x3 convolution to 32 channels and its LayerNorm2d (Transpose to channels last,
LayerNormalization over the last axis, Transpose back), then two blocks of a depthwise 7x7, a
Transpose to channels last, LayerNormalization, MatMul to 4x the channels with its bias, GELU
written out with Erf (its scalars Constant nodes), MatMul back with its bias, the layer scale
(a constant of 32 values along the last axis), a Transpose back and the residual Add; a last
3x3 to 3 channels added to the input. Free input size. Its reference is onnxruntime's output for
the same batch of two as the restorer's.

Run from the repository root (needs `pip install onnx onnxruntime numpy pillow`):
    python3 tests/reference/make_user_models.py
"""
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "user"
CONTEXT = 16


def pixel_shuffle_model():
    rng = np.random.default_rng(11)
    w = rng.uniform(-0.4, 0.4, (12, 3, 3, 3)).astype(np.float32)
    b = rng.uniform(-0.1, 0.1, (12,)).astype(np.float32)
    i64 = lambda name, v: numpy_helper.from_array(np.array(v, dtype=np.int64), name)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(b, "b"),
        i64("i0", [0]),
        i64("i2", [2]),
        i64("i3", [3]),
        i64("c3", [3]),
        i64("two", [2]),
    ]
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
        n("Shape", ["x"], ["s"]),
        n("Gather", ["s", "i0"], ["n"], axis=0),
        n("Gather", ["s", "i2"], ["h"], axis=0),
        n("Gather", ["s", "i3"], ["wd"], axis=0),
        n("Concat", ["n", "c3", "two", "two", "h", "wd"], ["shape6"], axis=0),
        n("Reshape", ["y", "shape6"], ["y6"]),
        n("Transpose", ["y6"], ["t6"], perm=[0, 1, 4, 2, 5, 3]),
        n("Mul", ["h", "two"], ["h2"]),
        n("Mul", ["wd", "two"], ["w2"]),
        n("Concat", ["n", "c3", "h2", "w2"], ["shape4"], axis=0),
        n("Reshape", ["t6", "shape4"], ["z"]),
        n("Sigmoid", ["z"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "pixel_shuffle_2x",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, "H2", "W2"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def wild_upscaler_model():
    rng = np.random.default_rng(12)
    inits = []
    nodes = []
    n = helper.make_node

    def conv(x, cin, cout, k, name, act=True):
        w = rng.normal(0, (2.0 / (cin * k * k)) ** 0.5, (cout, cin, k, k)).astype(np.float32)
        b = rng.uniform(-0.05, 0.05, (cout,)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, name + "_w"))
        inits.append(numpy_helper.from_array(b, name + "_b"))
        p = k // 2
        out = name if not act else name + "_c"
        nodes.append(n("Conv", [x, name + "_w", name + "_b"], [out], pads=[p, p, p, p]))
        if act:
            nodes.append(n("LeakyRelu", [out], [name], alpha=0.2))
        return name

    def scalar(name, v):
        inits.append(numpy_helper.from_array(np.array(v, dtype=np.float32), name))
        return name

    x = conv("x", 3, 32, 5, "head")
    for blk in range(2):
        feats = [x]
        for j in range(3):
            cat = f"b{blk}_cat{j}"
            nodes.append(n("Concat", feats, [cat], axis=1))
            feats.append(conv(cat, 32 + 16 * j, 16, 3, f"b{blk}_c{j}"))
        cat = f"b{blk}_cat3"
        nodes.append(n("Concat", feats, [cat], axis=1))
        fuse = conv(cat, 80, 32, 1, f"b{blk}_fuse", act=False)
        nodes.append(n("Mul", [fuse, scalar(f"b{blk}_k", 0.2)], [f"b{blk}_scaled"]))
        nodes.append(n("Add", [x, f"b{blk}_scaled"], [f"b{blk}_out"]))
        x = f"b{blk}_out"
    x = conv(x, 32, 32, 1, "mix")
    inits.append(numpy_helper.from_array(np.array([1, 1, 4, 4], dtype=np.float32), "scales"))
    nodes.append(n("Resize", [x, "", "scales"], ["up"], mode="nearest"))
    x = conv("up", 32, 16, 3, "hr")
    x = conv(x, 16, 3, 3, "last", act=False)
    nodes.append(n("Mul", [x, scalar("half", 0.5)], ["m"]))
    nodes.append(n("Add", ["m", scalar("half2", 0.5)], ["a"]))
    nodes.append(n("Clip", ["a", scalar("lo", 0.0), scalar("hi", 1.0)], ["out"]))
    graph = helper.make_graph(
        nodes,
        "wild_upscaler_4x",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, "H4", "W4"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def restorer_model():
    rng = np.random.default_rng(13)
    inits, nodes = [], []
    n = helper.make_node
    count = [0]

    def name(s):
        count[0] += 1
        return f"{s}{count[0]}"

    def const(v, dtype=np.float32):
        nm = name("k")
        inits.append(numpy_helper.from_array(np.asarray(v, dtype), nm))
        return nm

    def op(t, ins, **kw):
        nm = name(t.lower())
        nodes.append(n(t, ins, [nm], **kw))
        return nm

    def conv(x, cin, cout, k, group=1, gain=1.0):
        nm = name("conv")
        fan_in = cin // group * k * k
        w = gain * rng.normal(0, (2.0 / fan_in) ** 0.5, (cout, cin // group, k, k))
        b = rng.uniform(-0.05, 0.05, (cout,))
        nodes.append(n("Conv", [x, const(w), const(b)], [nm], pads=[k // 2] * 4, group=group))
        return nm

    def layer_norm(x, c):
        mu = op("ReduceMean", [x], axes=[1], keepdims=1)
        d = op("Sub", [x, mu])
        var = op("ReduceMean", [op("Pow", [d, const(2.0)])], axes=[1], keepdims=1)
        y = op("Div", [d, op("Sqrt", [op("Add", [var, const(1e-6)])])])
        g = const(rng.uniform(0.5, 1.5, (1, c, 1, 1)))
        return op("Add", [op("Mul", [y, g]), const(rng.uniform(-0.2, 0.2, (1, c, 1, 1)))])

    def gate(x, c):
        a, b = name("a"), name("b")
        nodes.append(n("Split", [x, const([c, c], np.int64)], [a, b], axis=1))
        return op("Mul", [a, b])

    def block(x, c):
        y = conv(layer_norm(x, c), c, 2 * c, 1)
        y = gate(conv(y, 2 * c, 2 * c, 3, group=2 * c), c)
        y = op("Mul", [y, conv(op("GlobalAveragePool", [y]), c, c, 1)])
        beta = const(rng.uniform(0.1, 0.5, (1, c, 1, 1)))
        x = op("Add", [x, op("Mul", [conv(y, c, c, 1), beta])])
        y = conv(gate(conv(layer_norm(x, c), c, 2 * c, 1), c), c, c, 1)
        gamma = const(rng.uniform(0.1, 0.5, (1, c, 1, 1)))
        return op("Add", [x, op("Mul", [y, gamma])])

    x = conv("x", 3, 16, 3)
    for _ in range(2):
        x = block(x, 16)
    nodes.append(n("Add", [conv(x, 16, 3, 3, gain=0.1), "x"], ["out"]))
    graph = helper.make_graph(
        nodes,
        "wild_restorer_1x",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def convnext_model():
    rng = np.random.default_rng(17)
    inits, nodes = [], []
    n = helper.make_node
    count = [0]

    def name(s):
        count[0] += 1
        return f"{s}{count[0]}"

    def const(v, dtype=np.float32):
        nm = name("k")
        inits.append(numpy_helper.from_array(np.asarray(v, dtype), nm))
        return nm

    def scalar(v):
        nm = name("c")
        nodes.append(n("Constant", [], [nm], value=numpy_helper.from_array(np.asarray(v, np.float32))))
        return nm

    def op(t, ins, **kw):
        nm = name(t.lower())
        nodes.append(n(t, ins, [nm], **kw))
        return nm

    def conv(x, cin, cout, k, group=1, gain=1.0):
        fan_in = cin // group * k * k
        w = gain * rng.normal(0, (2.0 / fan_in) ** 0.5, (cout, cin // group, k, k))
        b = rng.uniform(-0.05, 0.05, (cout,))
        return op("Conv", [x, const(w), const(b)], pads=[k // 2] * 4, group=group)

    def layer_norm(x, c):
        g, b = const(rng.uniform(0.5, 1.5, (c,))), const(rng.uniform(-0.2, 0.2, (c,)))
        return op("LayerNormalization", [x, g, b], axis=-1, epsilon=1e-6)

    def linear(x, cin, cout):
        w = rng.normal(0, (1.0 / cin) ** 0.5, (cin, cout))
        return op("Add", [op("MatMul", [x, const(w)]), const(rng.uniform(-0.1, 0.1, (cout,)))])

    def gelu(x):
        e = op("Erf", [op("Div", [x, scalar(2.0**0.5)])])
        return op("Mul", [op("Mul", [x, op("Add", [e, scalar(1.0)])]), scalar(0.5)])

    def block(x, c):
        y = op("Transpose", [conv(x, c, c, 7, group=c)], perm=[0, 2, 3, 1])
        y = linear(gelu(linear(layer_norm(y, c), c, 4 * c)), 4 * c, c)
        y = op("Mul", [y, const(rng.uniform(0.1, 0.5, (c,)))])
        return op("Add", [x, op("Transpose", [y], perm=[0, 3, 1, 2])])

    x = op("Transpose", [conv("x", 3, 32, 3)], perm=[0, 2, 3, 1])
    x = op("Transpose", [layer_norm(x, 32)], perm=[0, 3, 1, 2])
    for _ in range(2):
        x = block(x, 32)
    nodes.append(n("Add", [conv(x, 32, 3, 3, gain=0.1), "x"], ["out"]))
    graph = helper.make_graph(
        nodes,
        "wild_convnext_1x",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def batch_reference(model, name):
    rgb = np.asarray(Image.open(ROOT / "tests/fixtures/photo-60x44.png").convert("RGB"), np.float32)
    x = (rgb / 255.0).transpose(2, 0, 1)[None]
    x = np.concatenate([x, x * 0.5]).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": x})[0]
    y.astype("<f4").tofile(OUT / name)
    print(name, y.shape)


def reference(model, context, scale, name):
    rgb = np.asarray(Image.open(ROOT / "tests/fixtures/photo-60x44.png").convert("RGB"), np.float32)
    padded = np.pad(rgb / 255.0, ((context, context), (context, context), (0, 0)), mode="edge")
    x = padded.transpose(2, 0, 1)[None].astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": x})[0][0]
    c = scale * context
    y = y[:, c:-c, c:-c]
    y.astype("<f4").tofile(OUT / name)
    print(name, y.shape)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    model = pixel_shuffle_model()
    onnx.save(model, OUT / "pixel_shuffle_2x.onnx")
    reference(model, CONTEXT, 2, "photo-60x44.pixel_shuffle_2x.f32")
    wild = wild_upscaler_model()
    onnx.save(wild, OUT / "wild_upscaler_4x.onnx")
    reference(wild, 8, 4, "photo-60x44.wild_upscaler_4x.f32")
    restorer = restorer_model()
    onnx.save(restorer, OUT / "wild_restorer_1x.onnx")
    batch_reference(restorer, "photo-60x44.wild_restorer_1x.f32")
    convnext = convnext_model()
    onnx.save(convnext, OUT / "wild_convnext_1x.onnx")
    batch_reference(convnext, "photo-60x44.wild_convnext_1x.f32")


if __name__ == "__main__":
    main()
