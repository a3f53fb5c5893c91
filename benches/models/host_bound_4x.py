"""A 4x "upscaler" with almost no GPU work, for measuring the host's share of a tiled batch
(reading back, cropping, copying into images; not a test fixture): a 1x1 convolution 3 -> 48
and a DepthToSpace by 4, so a 128 px tile becomes 512 x 512 pixels (1 MiB of RGBA8) for
2.4 M multiply-adds. Random weights (seed 0).

Usage: python3 benches/models/host_bound_4x.py OUT.onnx
Then:  batchwise bench -m OUT.onnx --size 128 --count 256 --tile-size 128 --batch-sizes 16,64 --json
       (host_ms_per_batch.collect_ms minus gpu_ms_per_batch: the host's work after the GPU's)
"""
import sys
import numpy as np, onnx
from onnx import helper as h, TensorProto as T, numpy_helper as nh

rng = np.random.default_rng(0)
w = nh.from_array((rng.standard_normal((48, 3, 1, 1)) * 0.3).astype(np.float32), 'w')
b = nh.from_array(np.full(48, 0.5, np.float32), 'b')
nodes = [
    h.make_node('Conv', ['x', 'w', 'b'], ['y']),
    h.make_node('DepthToSpace', ['y'], ['z'], blocksize=4, mode='CRD'),
]
graph = h.make_graph(
    nodes, 'host_bound_4x',
    [h.make_tensor_value_info('x', T.FLOAT, ['N', 3, 'H', 'W'])],
    [h.make_tensor_value_info('z', T.FLOAT, ['N', 3, 'H4', 'W4'])],
    [w, b])
onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid('', 13)]), sys.argv[1])
