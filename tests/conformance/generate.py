"""Writes the ONNX backend node tests for the ops batchwise supports into tests/conformance/node/.

Run from the repository root (needs `pip install onnx numpy`):
    python3 tests/conformance/generate.py

pip's `onnx` package holds the node test cases as code (`onnx.backend.test.case.node`); this script
materialises each selected case as `model.onnx`, `input_<i>.pb` and `output_<i>.pb` (its first data
set), the layout of ONNX's own test data. Only cases whose nodes all use supported ops are kept.
"""
import pathlib
import shutil
import warnings

import numpy
import onnx
from onnx import numpy_helper
from onnx.backend.test.case import node

OUT = pathlib.Path(__file__).resolve().parent / "node"

# The ops the importer lowers, as ONNX op types.
SUPPORTED = {
    "Conv", "ConvTranspose", "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "HardSwish",
    "HardSigmoid", "Gelu", "Erf", "Add", "Sub", "Mul", "Div", "Concat", "Split", "DepthToSpace",
    "MaxPool", "AveragePool", "GlobalAveragePool", "Resize", "Pad", "BatchNormalization", "Gemm",
    "Flatten", "Identity", "Slice", "Reshape",
    # General tensors (the static lowering).
    "Exp", "Log", "Sqrt", "Abs", "Neg", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Softplus",
    "Softsign", "Elu", "Selu", "Celu", "ThresholdedRelu", "Mish", "Sin", "Cos", "Shrink", "Pow",
    "Max", "Min", "Sum", "Mean", "MatMul", "Squeeze", "Unsqueeze", "Transpose", "Expand", "Tile",
    "Gather", "SpaceToDepth", "Softmax", "LogSoftmax", "Hardmax", "ReduceMean", "ReduceSum",
    "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "InstanceNormalization", "LayerNormalization", "Constant",
    "ConstantOfShape", "Shape", "Size", "Cast", "Range", "Dropout",
}


def main():
    warnings.filterwarnings("ignore")
    if OUT.exists():
        shutil.rmtree(OUT)
    kept = 0
    for case in node.collect_testcases(None):
        ops = {n.op_type for n in case.model.graph.node}
        if not ops or not ops <= SUPPORTED or not case.data_sets:
            continue
        inputs, outputs = case.data_sets[0]
        if any(isinstance(x, list) for x in list(inputs) + list(outputs)):
            continue  # sequences and optionals: not tensors
        inputs = [numpy.asarray(x) for x in inputs]
        outputs = [numpy.asarray(y) for y in outputs]
        if any(x.dtype.kind in "OSU" for x in inputs + outputs):
            continue  # strings
        d = OUT / case.name
        d.mkdir(parents=True)
        onnx.save(case.model, d / "model.onnx")
        for i, x in enumerate(inputs):
            (d / f"input_{i}.pb").write_bytes(numpy_helper.from_array(x).SerializeToString())
        for i, y in enumerate(outputs):
            (d / f"output_{i}.pb").write_bytes(numpy_helper.from_array(y).SerializeToString())
        kept += 1
    print(f"{kept} node tests in {OUT}")


if __name__ == "__main__":
    main()
