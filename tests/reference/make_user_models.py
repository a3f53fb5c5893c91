"""Builds a user-style ONNX model that only the static lowering takes, and its onnxruntime output
on tests/fixtures/photo-60x44.png, into tests/fixtures/user/.

`pixel_shuffle_2x.onnx`: a 3x3 convolution to 12 channels, then a 2x pixel shuffle written the way
PyTorch exports it with free input sizes — Shape / Gather / Concat arithmetic feeding 6-D Reshape
and Transpose nodes — then a Sigmoid. Its input size is symbolic, so batchwise lowers it with every
shape fixed at one tile size. The reference pads the photo by 16 px of edge (the tiler's context),
as tests/reference/make_reference.py does, and writes planar float32 [3, 88, 120].

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


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    model = pixel_shuffle_model()
    onnx.save(model, OUT / "pixel_shuffle_2x.onnx")
    rgb = np.asarray(Image.open(ROOT / "tests/fixtures/photo-60x44.png").convert("RGB"), np.float32)
    padded = np.pad(rgb / 255.0, ((CONTEXT, CONTEXT), (CONTEXT, CONTEXT), (0, 0)), mode="edge")
    x = padded.transpose(2, 0, 1)[None].astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": x})[0][0]
    c = 2 * CONTEXT
    y = y[:, c:-c, c:-c]
    y.astype("<f4").tofile(OUT / "photo-60x44.pixel_shuffle_2x.f32")
    print(y.shape)


if __name__ == "__main__":
    main()
