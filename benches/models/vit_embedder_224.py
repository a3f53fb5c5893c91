"""A ViT-style image embedder as a timm/torch export lays it out, for benchmarks (not a test
fixture): a 16x16 stride-16 patch Conv, Flatten and Transpose to tokens, a class token
Concat, a position embedding, then BLOCKS pre-norm transformer blocks (LayerNormalization;
one MatMul to q, k and v, Reshape and Transpose to heads, Split; q k^T scaled, Softmax, times
v; Transpose and Reshape back; projection; residual; LayerNormalization, MatMul to 4x, GELU
with Erf, MatMul back, residual), a last LayerNormalization and the class token's features
(Gather) as the embedding. The batch dimension is free (`batch`), the Reshapes' targets built
from Shape as an export with a dynamic batch writes them. Random weights (seed 0).

Usage: python3 benches/models/vit_embedder_224.py OUT.onnx [WIDTH BLOCKS HEADS SIZE]
(default 192 4 3 224: ViT-Tiny's width and heads, 4 of its 12 blocks; 768 2 12 224 for ViT-B/16's)
"""
import sys
import numpy as np, onnx
from onnx import helper as h, TensorProto as T, numpy_helper as nh
rng = np.random.default_rng(0)
a = sys.argv
D = int(a[2]) if len(a) > 2 else 192
BLOCKS = int(a[3]) if len(a) > 3 else 4
HEADS = int(a[4]) if len(a) > 4 else 3
S = int(a[5]) if len(a) > 5 else 224
P = 16
N = (S // P) ** 2 + 1
HD = D // HEADS
nodes, inits = [], []
def init(name, arr, dt=np.float32):
    inits.append(nh.from_array(np.asarray(arr).astype(dt), name)); return name
def node(op, ins, outs, **kw):
    nodes.append(h.make_node(op, ins, outs, **kw)); return outs[0]
def ln(x, p):
    return node('LayerNormalization', [x, init(p + 'g', 1 + rng.normal(0, .1, D)), init(p + 'b', rng.normal(0, .1, D))], [p + 'o'], axis=-1, epsilon=1e-6)
# The batch size as a 1-element tensor, as exports compute it.
node('Shape', ['input'], ['shape'])
node('Gather', ['shape', init('zero', 0, np.int64)], ['b0'], axis=0)
node('Unsqueeze', ['b0', init('ax0', [0], np.int64)], ['b'])
def reshape_target(name, rest):
    return node('Concat', ['b', init(name + '_rest', rest, np.int64)], [name], axis=0)
x = node('Conv', ['input', init('pw', rng.normal(0, .05, (D, 3, P, P))), init('pb', rng.normal(0, .1, D))], ['patches'], kernel_shape=[P, P], strides=[P, P])
x = node('Reshape', [x, reshape_target('t_flat', [D, -1])], ['flat'])
x = node('Transpose', [x], ['tokens'], perm=[0, 2, 1])
cls = node('Expand', [init('cls', rng.normal(0, .5, (1, 1, D))), reshape_target('t_cls', [1, D])], ['cls_b'])
x = node('Concat', [cls, x], ['with_cls'], axis=1)
x = node('Add', [x, init('pos', rng.normal(0, .2, (1, N, D)))], ['embedded'])
for i in range(BLOCKS):
    p = f'blk{i}_'
    y = ln(x, p + 'ln1')
    y = node('MatMul', [y, init(p + 'wqkv', rng.normal(0, D ** -0.5, (D, 3 * D)))], [p + 'qkv0'])
    y = node('Add', [y, init(p + 'bqkv', rng.normal(0, .1, 3 * D))], [p + 'qkv1'])
    y = node('Reshape', [y, reshape_target(p + 't_qkv', [N, 3, HEADS, HD])], [p + 'qkv2'])
    y = node('Transpose', [y], [p + 'qkv3'], perm=[2, 0, 3, 1, 4])
    node('Split', [y, init(p + 'sp', [1, 1, 1], np.int64)], [p + 'q0', p + 'k0', p + 'v0'], axis=0)
    q = node('Squeeze', [p + 'q0', init(p + 'sq0', [0], np.int64)], [p + 'q'])
    k = node('Squeeze', [p + 'k0', init(p + 'sq1', [0], np.int64)], [p + 'k'])
    v = node('Squeeze', [p + 'v0', init(p + 'sq2', [0], np.int64)], [p + 'v'])
    kt = node('Transpose', [k], [p + 'kt'], perm=[0, 1, 3, 2])
    s = node('MatMul', [q, kt], [p + 's0'])
    s = node('Mul', [s, init(p + 'scale', HD ** -0.5)], [p + 's1'])
    s = node('Softmax', [s], [p + 'attn'], axis=-1)
    o = node('MatMul', [s, v], [p + 'o0'])
    o = node('Transpose', [o], [p + 'o1'], perm=[0, 2, 1, 3])
    o = node('Reshape', [o, reshape_target(p + 't_o', [N, D])], [p + 'o2'])
    o = node('MatMul', [o, init(p + 'wproj', rng.normal(0, D ** -0.5, (D, D)))], [p + 'o3'])
    o = node('Add', [o, init(p + 'bproj', rng.normal(0, .1, D))], [p + 'o4'])
    x = node('Add', [x, o], [p + 'res1'])
    y = ln(x, p + 'ln2')
    y = node('MatMul', [y, init(p + 'w1', rng.normal(0, D ** -0.5, (D, 4 * D)))], [p + 'm1'])
    y = node('Add', [y, init(p + 'b1', rng.normal(0, .1, 4 * D))], [p + 'a1'])
    d = node('Div', [y, init(p + 's2', np.sqrt(2.0))], [p + 'd'])
    e = node('Erf', [d], [p + 'e'])
    e = node('Add', [e, init(p + 'one', 1.0)], [p + 'e1'])
    g = node('Mul', [y, e], [p + 'g0'])
    g = node('Mul', [g, init(p + 'half', 0.5)], [p + 'gel'])
    y = node('MatMul', [g, init(p + 'w2', rng.normal(0, (4 * D) ** -0.5, (4 * D, D)))], [p + 'm2'])
    y = node('Add', [y, init(p + 'b2', rng.normal(0, .1, D))], [p + 'a2'])
    x = node('Add', [x, y], [p + 'res2'])
x = ln(x, 'final_ln')
node('Gather', [x, init('cls_at', 0, np.int64)], ['embedding'], axis=1)
g = h.make_graph(nodes, 'vit', [h.make_tensor_value_info('input', T.FLOAT, ['batch', 3, S, S])],
                 [h.make_tensor_value_info('embedding', T.FLOAT, ['batch', D])], inits)
m = h.make_model(g, opset_imports=[h.make_opsetid('', 17)]); m.ir_version = 8
onnx.checker.check_model(m, full_check=True); onnx.save(m, sys.argv[1])
print('ok')
