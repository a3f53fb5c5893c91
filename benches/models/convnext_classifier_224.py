"""A ConvNeXt-style classifier with a fixed 224 px input, for benchmarks (not a test fixture):
a 4x4 stride-4 stem to 32 channels, two ConvNeXt blocks exported channels-last (7x7 depthwise,
LayerNormalization, MatMul to 128, GELU with Erf, MatMul back, layer scale, residual),
GlobalAveragePool, Flatten, Gemm to 10. Random weights (seed 0).

Usage: python3 benches/models/convnext_classifier_224.py OUT.onnx [CHANNELS BLOCKS]
(default 32 channels, 2 blocks; 384 and 36 make a 173 MB file, for load times)
"""
import sys
import numpy as np, onnx
from onnx import helper as h, TensorProto as T, numpy_helper as nh
rng=np.random.default_rng(0)
C=int(sys.argv[2]) if len(sys.argv) > 2 else 32
nodes=[];inits=[]
def init(name, arr):
    inits.append(nh.from_array(arr.astype(np.float32), name)); return name
x='input'
nodes.append(h.make_node('Conv',[x,init('w0',rng.normal(0,.3,(C,3,4,4))),init('b0',rng.normal(0,.1,C))],['stem'],kernel_shape=[4,4],strides=[4,4]))
cur='stem'
for blk in range(int(sys.argv[3]) if len(sys.argv) > 3 else 2):
    p=f'b{blk}_'
    nodes.append(h.make_node('Conv',[cur,init(p+'dw',rng.normal(0,.2,(C,1,7,7))),init(p+'dwb',rng.normal(0,.1,C))],[p+'dwo'],kernel_shape=[7,7],pads=[3,3,3,3],group=C))
    nodes.append(h.make_node('Transpose',[p+'dwo'],[p+'t1'],perm=[0,2,3,1]))
    nodes.append(h.make_node('LayerNormalization',[p+'t1',init(p+'g',1+rng.normal(0,.1,C)),init(p+'be',rng.normal(0,.1,C))],[p+'ln'],axis=-1,epsilon=1e-6))
    nodes.append(h.make_node('MatMul',[p+'ln',init(p+'w1',rng.normal(0,.2,(C,4*C)))],[p+'m1']))
    nodes.append(h.make_node('Add',[p+'m1',init(p+'b1',rng.normal(0,.1,4*C))],[p+'a1']))
    # GELU erf form
    nodes.append(h.make_node('Div',[p+'a1',init(p+'s2',np.array(np.sqrt(2.0)))],[p+'d']))
    nodes.append(h.make_node('Erf',[p+'d'],[p+'e']))
    nodes.append(h.make_node('Add',[p+'e',init(p+'one',np.array(1.0))],[p+'e1']))
    nodes.append(h.make_node('Mul',[p+'a1',p+'e1'],[p+'g1']))
    nodes.append(h.make_node('Mul',[p+'g1',init(p+'half',np.array(0.5))],[p+'gel']))
    nodes.append(h.make_node('MatMul',[p+'gel',init(p+'w2',rng.normal(0,.1,(4*C,C)))],[p+'m2']))
    nodes.append(h.make_node('Add',[p+'m2',init(p+'b2',rng.normal(0,.1,C))],[p+'a2']))
    nodes.append(h.make_node('Transpose',[p+'a2'],[p+'t2'],perm=[0,3,1,2]))
    nodes.append(h.make_node('Mul',[p+'t2',init(p+'ls',rng.normal(0,.5,(C,1,1)))],[p+'sc']))
    nodes.append(h.make_node('Add',[p+'sc',cur],[p+'out']))
    cur=p+'out'
nodes.append(h.make_node('GlobalAveragePool',[cur],['pool']))
nodes.append(h.make_node('Flatten',['pool'],['flat']))
nodes.append(h.make_node('Gemm',['flat',init('fc',rng.normal(0,.2,(10,C))),init('fcb',rng.normal(0,.1,10))],['output'],transB=1))
g=h.make_graph(nodes,'cnx',[h.make_tensor_value_info('input',T.FLOAT,[1,3,224,224])],[h.make_tensor_value_info('output',T.FLOAT,[1,10])],inits)
m=h.make_model(g,opset_imports=[h.make_opsetid('',17)]); m.ir_version=8
onnx.checker.check_model(m); onnx.save(m, sys.argv[1])
print('ok')
