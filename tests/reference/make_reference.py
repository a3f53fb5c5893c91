"""Makes the onnxruntime reference outputs the engine tests compare against.

Run from the repository root (needs `pip install onnxruntime numpy pillow`):
    python3 tests/reference/make_reference.py

For each fixture image it pads the image by the model's context (edge replicate, as the tiler does),
runs the model with onnxruntime on the CPU in float32 and writes the output as raw little-endian
float32, planar [3, H*scale, W*scale], next to a JSON file describing it. The committed outputs let
CI check the engine without Python.
"""
import json
import pathlib

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED = ROOT.parent / "shared"

# (fixture name, source image, crop box (left, top, right, bottom))
CROPS = [
    ("photo-60x44.png", "sample1.jpg", (900, 500, 960, 544)),
]
# (model id, ONNX file, scale, context px per side)
MODELS = [
    ("upscale-photo-2x", "assets/models/waifu2x_upconv7_photo_scale2.0x.onnx", 2, 7),
    ("upscale-photo-2x-denoise0", "assets/models/waifu2x_upconv7_photo_noise0_scale2.0x.onnx", 2, 7),
    ("upscale-photo-2x-denoise1", "assets/models/waifu2x_upconv7_photo_noise1_scale2.0x.onnx", 2, 7),
    ("upscale-photo-2x-denoise2", "assets/models/waifu2x_upconv7_photo_noise2_scale2.0x.onnx", 2, 7),
    ("upscale-photo-2x-denoise3", "assets/models/waifu2x_upconv7_photo_noise3_scale2.0x.onnx", 2, 7),
    ("upscale-anime-4x", "assets/models/realesr_animevideov3_x4.onnx", 4, 18),
    ("upscale-anime-2x", "assets/models/realesr_animevideov3_x2.onnx", 2, 19),
    ("enhance-low-light", "assets/models/zero_dce.onnx", 1, 7),
]


# Fixed-input models: (fixture, source image), cropped to the centre square and resized to 224
# with PIL's bicubic filter; the 224x224 PNG is what both engines read.
CLASSIFY_FIXTURE = ("photo-224.png", "sample2.jpg")
EFFICIENTNET = "assets/models/efficientnet_lite0.onnx"


def classify_reference():
    name, source = CLASSIFY_FIXTURE
    path = FIXTURES / name
    if not path.exists():
        img = Image.open(SHARED / "images" / source).convert("RGB")
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img.crop((left, top, left + side, top + side)).resize((224, 224), Image.BICUBIC).save(path)
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    x = ((rgb - 127.0) / 128.0).transpose(2, 0, 1)[None].astype(np.float32)
    sess = ort.InferenceSession(str(ROOT / EFFICIENTNET), providers=["CPUExecutionProvider"])
    logits, feat = sess.run(["logits", "feat"], {"input": x})
    for out_name, y in [("logits", logits), ("feat", feat)]:
        out = FIXTURES / f"{path.stem}.efficientnet.{out_name}.f32"
        y[0].astype("<f4").tofile(out)
        print(out, y.shape)
    labels = json.loads((ROOT / "assets" / "models" / "imagenet_labels.json").read_text())
    top5 = np.argsort(-logits[0])[:5]
    (FIXTURES / f"{path.stem}.efficientnet.json").write_text(
        json.dumps(
            {
                "input": name,
                "preprocessing": "(v - 127) / 128, RGB, NCHW",
                "top5": [int(i) for i in top5],
                "top5_labels": [labels[i] for i in top5],
                "onnxruntime": ort.__version__,
            },
            indent=2,
        )
        + "\n"
    )
    print("top-5:", [labels[i] for i in top5])


SEGMENT_FIXTURE = ("photo-256.png", "sample3.jpg")


def segment_reference():
    name, source = SEGMENT_FIXTURE
    path = FIXTURES / name
    if not path.exists():
        img = Image.open(SHARED / "images" / source).convert("RGB")
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img.crop((left, top, left + side, top + side)).resize((256, 256), Image.BICUBIC).save(path)
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    sess = ort.InferenceSession(
        str(ROOT / "assets/models/selfie_segmentation.onnx"), providers=["CPUExecutionProvider"]
    )
    (mask,) = sess.run(None, {"input_nhwc": rgb[None]})
    out = FIXTURES / f"{path.stem}.remove-background.f32"
    mask[0, :, :, 0].astype("<f4").tofile(out)
    print(out, mask.shape, float(mask.mean()))


# A 128x128 crop of a photo with several faces: (fixture, source, crop box).
FACES_FIXTURE = ("photo-128-faces.png", "sample3.jpg", (570, 0, 570 + 1350, 1350))


def faces_reference():
    name, source, box = FACES_FIXTURE
    path = FIXTURES / name
    if not path.exists():
        img = Image.open(SHARED / "images" / source).convert("RGB")
        img.crop(box).resize((128, 128), Image.BICUBIC).save(path)
    x = (np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0 * 2.0 - 1.0)[None]
    sess = ort.InferenceSession(
        str(ROOT / "assets/models/face_detection_short_range.onnx"),
        providers=["CPUExecutionProvider"],
    )
    regressors, logits = sess.run(["output0_nhwc", "output1_nhwc"], {"input_nhwc": x})
    for out_name, y in [("regressors", regressors), ("logits", logits)]:
        out = FIXTURES / f"{path.stem}.detect-faces.{out_name}.f32"
        y[0].astype("<f4").tofile(out)
        print(out, y.shape)


def main():
    for name, source, box in CROPS:
        path = FIXTURES / name
        if not path.exists():
            Image.open(SHARED / "images" / source).convert("RGB").crop(box).save(path)
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        for model_id, onnx_file, scale, context in MODELS:
            sess = ort.InferenceSession(str(ROOT / onnx_file), providers=["CPUExecutionProvider"])
            x = np.pad(rgb, ((context, context), (context, context), (0, 0)), mode="edge")
            x = x.transpose(2, 0, 1)[None].astype(np.float32)
            (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
            y = y[0].astype("<f4")
            if y.shape[1] > rgb.shape[0] * scale:
                # Same-size networks (padding inside): crop the padded border's output.
                c = context * scale
                y = y[:, c:-c, c:-c]
            assert y.shape == (3, rgb.shape[0] * scale, rgb.shape[1] * scale), y.shape
            out = FIXTURES / f"{path.stem}.{model_id}.f32"
            y.tofile(out)
            meta = {
                "input": name,
                "model": model_id,
                "shape": list(y.shape),
                "layout": "planar RGB float32 little-endian",
                "onnxruntime": ort.__version__,
            }
            (FIXTURES / f"{path.stem}.{model_id}.json").write_text(json.dumps(meta, indent=2) + "\n")
            print(out, y.shape, float(y.min()), float(y.max()))


if __name__ == "__main__":
    main()
    classify_reference()
    segment_reference()
    faces_reference()
