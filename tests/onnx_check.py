#!/usr/bin/python3
"""Checks an ONNX file that mpiflow-export wrote, independently of mpiflow.

1. ONNX's checker (full check, with shape inference) and strict shape inference;
2. the graph evaluated by a small NumPy interpreter written from the ONNX operator
   specifications (Debian's python3-onnx 1.12 has no runtime of its own), on the test data
   mpiflow-export wrote (input_0.pb), compared with mpiflow's outputs (output_0.pb, ...).

Usage: onnx_check.py MODEL.onnx TEST_DATA_DIR [--tolerance T]
Prints one line per output with the largest difference; exits 1 when one is over T.
"""
import argparse
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def pad_nchw(x, pads, value):
    h0, w0, h1, w1 = pads
    return np.pad(x, ((0, 0), (0, 0), (h0, h1), (w0, w1)), constant_values=value)


def windows(x, k, strides, pads, value):
    """Yields (i, j, view): the window tap (i, j) of every output position, (N, C, OH, OW)."""
    xp = pad_nchw(x, pads, value)
    oh = (xp.shape[2] - k[0]) // strides[0] + 1
    ow = (xp.shape[3] - k[1]) // strides[1] + 1
    for i in range(k[0]):
        for j in range(k[1]):
            yield i, j, xp[:, :, i:i + strides[0] * oh:strides[0], j:j + strides[1] * ow:strides[1]]


def conv(x, w, b, a):
    k, s, p = a["kernel_shape"], a.get("strides", [1, 1]), a.get("pads", [0, 0, 0, 0])
    out = None
    for i, j, v in windows(x, k, s, p, 0.0):
        t = np.einsum("nchw,mc->nmhw", v, w[:, :, i, j])
        out = t if out is None else out + t
    return out + b.reshape(1, -1, 1, 1)


def max_pool(x, a):
    k, s, p = a["kernel_shape"], a.get("strides", [1, 1]), a.get("pads", [0, 0, 0, 0])
    return np.max(np.stack([v for _, _, v in windows(x, k, s, p, -np.inf)]), axis=0)


def average_pool(x, a):
    # count_include_pad = 0: divide by the cells of the window inside the input
    assert a.get("count_include_pad", 0) == 0
    k, s, p = a["kernel_shape"], a.get("strides", [1, 1]), a.get("pads", [0, 0, 0, 0])
    total = sum(v for _, _, v in windows(x, k, s, p, 0.0))
    count = sum(v for _, _, v in windows(np.ones_like(x), k, s, p, 0.0))
    return total / count


def batch_norm(x, scale, bias, mean, var, a):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    eps = a.get("epsilon", 1e-5)
    return ((x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * scale.reshape(shape)
            + bias.reshape(shape))


def layer_norm(x, scale, bias, a):
    axis = a.get("axis", -1)
    axes = tuple(range(axis % x.ndim, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + a.get("epsilon", 1e-5)) * scale + bias


def softmax(x, a):
    e = np.exp(x - x.max(axis=a.get("axis", -1), keepdims=True))
    return e / e.sum(axis=a.get("axis", -1), keepdims=True)


def gemm(x, w, b, a):
    assert not a.get("transA", 0) and not a.get("transB", 0)
    return a.get("alpha", 1.0) * x @ w + a.get("beta", 1.0) * b


OPS = {
    "Transpose": lambda x, a: np.transpose(x, a["perm"]),
    "Conv": lambda x, w, b, a: conv(x, w, b, a),
    "MaxPool": lambda x, a: max_pool(x, a),
    "AveragePool": lambda x, a: average_pool(x, a),
    "Flatten": lambda x, a: x.reshape(int(np.prod(x.shape[:a.get("axis", 1)])), -1),
    "Reshape": lambda x, s, a: x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(s)]),
    "Gemm": gemm,
    "Relu": lambda x, a: np.maximum(x, 0),
    "Tanh": lambda x, a: np.tanh(x),
    "Sigmoid": lambda x, a: 1 / (1 + np.exp(-x)),
    "BatchNormalization": batch_norm,
    "LayerNormalization": layer_norm,
    "Add": lambda x, y, a: x + y,
    "Identity": lambda x, a: x,
    "Equal": lambda x, y, a: x == y,
    "Cast": lambda x, a: x.astype({onnx.TensorProto.FLOAT: np.float64,
                                   onnx.TensorProto.INT64: np.int64}[a["to"]]),
    "Gather": lambda x, i, a: np.take(x, i, axis=a.get("axis", 0)),
    "Unsqueeze": lambda x, axes, a: np.expand_dims(x, tuple(int(v) for v in axes)),
    "ReduceSum": lambda x, axes, a: np.sum(x, axis=tuple(int(v) for v in axes),
                                           keepdims=bool(a.get("keepdims", 1))),
    "Mul": lambda x, y, a: x * y,
    "Div": lambda x, y, a: x / y,
    "Max": lambda x, y, a: np.maximum(x, y),
    "Softmax": softmax,
}


def evaluate(model, feeds):
    values = {t.name: numpy_helper.to_array(t).astype(np.float64)
              if t.data_type == onnx.TensorProto.FLOAT else numpy_helper.to_array(t)
              for t in model.graph.initializer}
    values.update({k: v.astype(np.float64) for k, v in feeds.items()})
    for node in model.graph.node:
        if node.op_type not in OPS:
            sys.exit(f"onnx_check: no evaluator for {node.op_type} (node {node.name})")
        values[node.output[0]] = OPS[node.op_type](*[values[i] for i in node.input], attrs(node))
    return [values[o.name] for o in model.graph.output]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("test_data")
    p.add_argument("--tolerance", type=float, default=1e-4)
    args = p.parse_args()
    model = onnx.load(args.model)
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    print(f"onnx_check: checker passed: opset {model.opset_import[0].version}, "
          f"{len(model.graph.node)} nodes, ops {sorted({n.op_type for n in model.graph.node})}")
    x = onnx.TensorProto()
    with open(f"{args.test_data}/input_0.pb", "rb") as f:
        x.ParseFromString(f.read())
    got = evaluate(model, {model.graph.input[0].name: numpy_helper.to_array(x)})
    worst = 0.0
    for i, (out, value) in enumerate(zip(model.graph.output, got)):
        want = onnx.TensorProto()
        with open(f"{args.test_data}/output_{i}.pb", "rb") as f:
            want.ParseFromString(f.read())
        want = numpy_helper.to_array(want)
        if value.shape != want.shape:
            sys.exit(f"onnx_check: {out.name} is {value.shape}, mpiflow gave {want.shape}")
        diff = float(np.max(np.abs(value - want) / (1 + np.abs(want))))
        worst = max(worst, diff)
        print(f"onnx_check: {out.name} {list(want.shape)}: largest difference {diff:.3g} "
              f"(relative to 1 + |value|)")
    if worst > args.tolerance:
        sys.exit(f"onnx_check: over the tolerance {args.tolerance}")
    print("onnx_check: outputs agree")


if __name__ == "__main__":
    main()
