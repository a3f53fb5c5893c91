"""onnxruntime on the CPU on the workload of `batchwise bench -m MODEL --count C` for the fixed-input
built-ins (classify, embed): C random images at the model's input size, in batches of B (the model's
batch dimension made free for it), with the same number of threads as the machine's cores by
default. Prints images/s for each batch size: the context for batchwise's figures on the same
machine (no peer runs these models on Vulkan). Usage (from the repository root):
    python3 benches/peers/fixed_peers.py [--model classify] [--count 32] [--batch-sizes 1,8]
"""
import argparse
import json
import os
import pathlib
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
# model id: (ONNX file, input side, output the model id reads)
MODELS = {
    "classify": (ROOT / "assets" / "models" / "efficientnet_lite0.onnx", 224, "logits"),
    "embed": (ROOT / "assets" / "models" / "efficientnet_lite0.onnx", 224, "feat"),
}


def session(model, threads):
    """The model with a free batch dimension, as an onnxruntime CPU session."""
    import onnx
    import onnxruntime as ort

    path, _, output = MODELS[model]
    proto = onnx.load(str(path))
    for value in list(proto.graph.input) + list(proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess, sess.get_inputs()[0].name, output


def bench(model, count, batch, threads):
    sess, name, output = session(model, threads)
    side = MODELS[model][1]
    rng = np.random.default_rng(1)
    batches = [
        rng.random((min(batch, count - i), 3, side, side), dtype=np.float32)
        for i in range(0, count, batch)
    ]
    sess.run([output], {name: batches[0]})  # warm-up
    start = time.perf_counter()
    for x in batches:
        sess.run([output], {name: x})
    return count / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="classify", choices=sorted(MODELS))
    ap.add_argument("--count", type=int, default=32)
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    args = ap.parse_args()
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    rates = {b: bench(args.model, args.count, b, args.threads) for b in sizes}
    if args.json:
        record = {"model": args.model, "count": args.count, "threads": args.threads}
        print(json.dumps({**record, "onnxruntime_cpu_images_per_sec": rates}, indent=2))
        return
    print(f"{args.model}, {args.count} images, onnxruntime CPU, {args.threads} threads")
    for b, rate in rates.items():
        print(f"batch {b:<3} {rate:8.2f} images/s")


if __name__ == "__main__":
    main()
