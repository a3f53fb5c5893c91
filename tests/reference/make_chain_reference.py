"""Makes the onnxruntime references of chains (`-m a,b`): the models run one after another on
float intermediates, as two jobs would with lossless float files between them.

Run from the repository root (needs `pip install onnxruntime numpy pillow`):
    python3 tests/reference/make_chain_reference.py

Each step pads its input by its context (edge replicate, as the tiler does with an image), runs
with onnxruntime on the CPU in float32 and crops what a same-size network computes for the
padding; its output is clamped to [0, 1] (an image holds nothing outside) before the next step.
The chain's output is left unclamped (the engine's float output is compared before 8-bit
conversion). Written as raw little-endian float32, planar [3, H*scale, W*scale].
"""
import json
import pathlib

import numpy as np
import onnxruntime as ort
from PIL import Image

from make_reference import FIXTURES, MODELS, ROOT

CHAINS = [
    ("enhance-low-light", "upscale-photo-2x"),
    ("upscale-photo-2x", "enhance-low-light"),
]


def step(rgb_chw, model_id):
    """One model on a planar [3, H, W] image in [0, 1]."""
    _, onnx_file, scale, context = next(m for m in MODELS if m[0] == model_id)
    sess = ort.InferenceSession(str(ROOT / onnx_file), providers=["CPUExecutionProvider"])
    x = np.pad(rgb_chw, ((0, 0), (context, context), (context, context)), mode="edge")
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x[None].astype(np.float32)})
    y = y[0]
    h, w = rgb_chw.shape[1] * scale, rgb_chw.shape[2] * scale
    if y.shape[1] > h:
        c = context * scale
        y = y[:, c:-c, c:-c]
    assert y.shape == (3, h, w), y.shape
    return y


def main():
    name = "photo-60x44.png"
    rgb = np.asarray(Image.open(FIXTURES / name).convert("RGB"), dtype=np.float32) / 255.0
    for chain in CHAINS:
        x = rgb.transpose(2, 0, 1)
        for i, model_id in enumerate(chain):
            if i > 0:
                x = np.clip(x, 0.0, 1.0)
            x = step(x, model_id)
        chain_id = "+".join(chain)
        out = FIXTURES / f"photo-60x44.{chain_id}.f32"
        x.astype("<f4").tofile(out)
        meta = {
            "input": name,
            "chain": list(chain),
            "shape": list(x.shape),
            "layout": "planar RGB float32 little-endian",
            "onnxruntime": ort.__version__,
        }
        (FIXTURES / f"photo-60x44.{chain_id}.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(out, x.shape, float(x.min()), float(x.max()))


if __name__ == "__main__":
    main()
