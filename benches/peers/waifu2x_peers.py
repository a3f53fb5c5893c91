"""Peers on the same workload as `batchwise bench -m upscale-photo-2x --size S --count C`.

Runs waifu2x upconv_7 photo 2x on C random S x S images, one image per call with 7 px of context,
as the ncnn command-line upscalers do, with:
  - ncnn on Vulkan (pip `ncnn`; on a machine without a GPU it sees Mesa's lavapipe as its GPU),
  - ncnn on the CPU,
  - onnxruntime on the CPU (pip `onnxruntime`).
Prints images/s for each. Usage (from the repository root):
    python3 benches/peers/waifu2x_peers.py [--size 128] [--count 32] [--threads 2]
The NCNN files come from ../shared/models/ncnn (the originals the ONNX file was converted from).
"""
import argparse
import pathlib
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
NCNN_DIR = ROOT.parent / "shared" / "models" / "ncnn" / "waifu2x-upconv_7-photo"
ONNX = ROOT / "assets" / "models" / "waifu2x_upconv7_photo_scale2.0x.onnx"
CONTEXT = 7


def images(size, count):
    rng = np.random.default_rng(1)
    return [
        np.pad(rng.random((3, size, size), dtype=np.float32), ((0, 0), (CONTEXT,) * 2, (CONTEXT,) * 2), mode="edge")
        for _ in range(count)
    ]


def bench_ncnn(inputs, vulkan, threads):
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = vulkan
    net.opt.num_threads = threads
    net.load_param(str(NCNN_DIR / "scale2.0x_model.param"))
    net.load_model(str(NCNN_DIR / "scale2.0x_model.bin"))

    def run(x):
        ex = net.create_extractor()
        ex.input("Input1", ncnn.Mat(x))
        _, out = ex.extract("Eltwise4")
        return np.array(out)

    run(inputs[0])  # warm-up: pipeline creation
    start = time.perf_counter()
    for x in inputs:
        y = run(x)
    secs = time.perf_counter() - start
    assert y.shape[1] == (x.shape[1] - 2 * CONTEXT) * 2, y.shape
    return len(inputs) / secs


def bench_onnxruntime(inputs, threads):
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
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--count", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-vulkan", action="store_true")
    args = ap.parse_args()
    inputs = images(args.size, args.count)
    print(f"waifu2x upconv_7 photo 2x, {args.count} images of {args.size}x{args.size}, one per call")
    if not args.skip_vulkan:
        print(f"ncnn Vulkan        {bench_ncnn(inputs, True, args.threads):8.3f} images/s")
    print(f"ncnn CPU           {bench_ncnn(inputs, False, args.threads):8.3f} images/s")
    print(f"onnxruntime CPU    {bench_onnxruntime(inputs, args.threads):8.3f} images/s")


if __name__ == "__main__":
    main()
