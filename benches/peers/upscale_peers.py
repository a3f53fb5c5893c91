"""Peers on the same workload as `batchwise bench -m MODEL --size S --count C`.

Runs the model on C random S x S images, one image per call with the tile's context around it, as
the ncnn command-line upscalers do, with:
  - ncnn on Vulkan (pip `ncnn`; on a machine without a GPU it sees Mesa's lavapipe as its GPU),
  - ncnn on the CPU,
  - onnxruntime on the CPU (pip `onnxruntime`).
Prints images/s for each. Usage (from the repository root):
    python3 benches/peers/upscale_peers.py [--model upscale-photo-2x] [--size 128] [--count 32]
The NCNN files come from ../shared/models/ncnn (the originals the ONNX files were converted from), or
the folder --ncnn-dir names (the GPU bundle carries them: benches/gpu/bundle.sh).
"""
import argparse
import json
import pathlib
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
NCNN = ROOT.parent / "shared" / "models" / "ncnn"
# model id: (ncnn param, ncnn bin, input blob, output blob, ONNX file, context px, scale); the
# NCNN paths relative to the NCNN folder.
MODELS = {
    "upscale-photo-2x": (
        "waifu2x-upconv_7-photo/scale2.0x_model.param",
        "waifu2x-upconv_7-photo/scale2.0x_model.bin",
        "Input1", "Eltwise4",
        ROOT / "assets" / "models" / "waifu2x_upconv7_photo_scale2.0x.onnx", 7, 2,
    ),
    "upscale-anime-4x": (
        "realesr-animevideov3/realesr-animevideov3-x4.param",
        "realesr-animevideov3/realesr-animevideov3-x4.bin",
        "data", "output",
        ROOT / "assets" / "models" / "realesr_animevideov3_x4.onnx", 18, 4,
    ),
}
CONTEXT = 7


def images(size, count):
    rng = np.random.default_rng(1)
    return [
        np.pad(rng.random((3, size, size), dtype=np.float32), ((0, 0), (CONTEXT,) * 2, (CONTEXT,) * 2), mode="edge")
        for _ in range(count)
    ]


def bench_ncnn(model, inputs, vulkan, threads):
    import ncnn

    param, weights, blob_in, blob_out, _, _, _ = MODELS[model]
    net = ncnn.Net()
    net.opt.use_vulkan_compute = vulkan
    net.opt.num_threads = threads
    net.load_param(str(NCNN / param))
    net.load_model(str(NCNN / weights))

    def run(x):
        ex = net.create_extractor()
        ex.input(blob_in, ncnn.Mat(x))
        _, out = ex.extract(blob_out)
        return np.array(out)

    run(inputs[0])  # warm-up: pipeline creation
    start = time.perf_counter()
    for x in inputs:
        run(x)
    return len(inputs) / (time.perf_counter() - start)


def bench_onnxruntime(model, inputs, threads):
    ONNX = MODELS[model][4]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(ONNX), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    sess.run(None, {name: inputs[0][None]})
    start = time.perf_counter()
    for x in inputs:
        sess.run(None, {name: x[None]})
    return len(inputs) / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="upscale-photo-2x", choices=sorted(MODELS))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--count", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-vulkan", action="store_true")
    ap.add_argument("--skip-cpu", action="store_true", help="ncnn on Vulkan only")
    ap.add_argument("--ncnn-dir", type=pathlib.Path, help="the NCNN models' folder")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    args = ap.parse_args()
    global CONTEXT, NCNN
    NCNN = args.ncnn_dir or NCNN
    CONTEXT = MODELS[args.model][5]
    inputs = images(args.size, args.count)
    rates = {}
    if not args.skip_vulkan:
        rates["ncnn_vulkan"] = bench_ncnn(args.model, inputs, True, args.threads)
    if not args.skip_cpu:
        rates["ncnn_cpu"] = bench_ncnn(args.model, inputs, False, args.threads)
        rates["onnxruntime_cpu"] = bench_onnxruntime(args.model, inputs, args.threads)
    if args.json:
        record = {"model": args.model, "size": args.size, "count": args.count, "context": CONTEXT}
        print(json.dumps({**record, "images_per_sec": rates}, indent=2))
        return
    print(f"{args.model}, {args.count} images of {args.size}x{args.size} + {CONTEXT} px context, one per call")
    names = {"ncnn_vulkan": "ncnn Vulkan", "ncnn_cpu": "ncnn CPU", "onnxruntime_cpu": "onnxruntime CPU"}
    for key, rate in rates.items():
        print(f"{names[key]:<18} {rate:8.3f} images/s")


if __name__ == "__main__":
    main()
