#!/usr/bin/env python3
"""Converts MediaPipe's selfie segmentation TFLite models to ONNX (opset 17).

    convert_selfie_tflite.py MODEL.tflite OUT.onnx

The model takes an NHWC RGB image in [0, 1] and gives an NHWC person probability. tf2onnx and
tflite2onnx stop at MediaPipe's custom `Convolution2DTransposeBias`, so this converter maps the
eleven operators the two models use by hand: fp16 weights are dequantised to fp32 constants,
the graph runs in NCHW between one transpose in and one out, TensorFlow's SAME padding becomes
explicit pads, and the custom op becomes ConvTranspose with its bias. Deterministic: the same
input gives the same bytes.
"""

import struct
import sys

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

FLOAT32, FLOAT16, INT32 = 0, 1, 2
SAME, VALID = 0, 1
NONE, RELU, RELU6 = 0, 1, 3


class Converter:
    def __init__(self, data: bytes):
        self.model = tflite.Model.GetRootAsModel(data, 0)
        self.graph = self.model.Subgraphs(0)
        self.nodes, self.initializers = [], []
        self.names = {}  # TFLite tensor index -> ONNX value name (activations, NCHW)
        self.consts = {}  # TFLite tensor index -> numpy array (TFLite layout)
        self.counter = 0

    def fresh(self, hint):
        self.counter += 1
        return f"{hint}_{self.counter}"

    def tensor(self, i):
        return self.graph.Tensors(i)

    def shape(self, i):
        return [int(d) for d in self.tensor(i).ShapeAsNumpy()]

    def buffer(self, i):
        t = self.tensor(i)
        raw = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(raw, int) or raw is None or len(raw) == 0:
            return None
        dtype = {FLOAT32: np.float32, FLOAT16: np.float16, INT32: np.int32}[t.Type()]
        return np.frombuffer(raw.tobytes(), dtype=dtype).reshape(self.shape(i))

    def const(self, i):
        if i not in self.consts:
            b = self.buffer(i)
            if b is None:
                raise ValueError(f"tensor {i} is neither an activation nor a constant")
            self.consts[i] = b
        return self.consts[i]

    def initializer(self, array, hint):
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, hint, **attrs):
        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def activation(self, name, fused):
        if fused == NONE:
            return name
        if fused == RELU:
            return self.node("Relu", [name], "relu")
        if fused == RELU6:
            return self.node("Clip", [name, self.initializer(np.float32(0), "zero"), self.initializer(np.float32(6), "six")], "relu6")
        raise ValueError(f"fused activation {fused} is not supported")

    def operand(self, i):
        """An input of an elementwise op: an activation, or a constant laid out for NCHW."""
        if i in self.names:
            return self.names[i]
        c = self.const(i).astype(np.float32)
        if c.ndim == 4:
            c = c.transpose(0, 3, 1, 2)
        elif c.ndim == 1 and c.size > 1:
            c = c.reshape(1, -1, 1, 1)
        return self.initializer(c, "const")

    @staticmethod
    def same_pads(size, kernel, stride, dilation=1):
        out = -(-size // stride)
        total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
        return total // 2, total - total // 2

    def conv_pads(self, padding, in_shape, kh, kw, sh, sw, dh=1, dw=1):
        if padding == VALID:
            return [0, 0, 0, 0]
        top, bottom = self.same_pads(in_shape[1], kh, sh, dh)
        left, right = self.same_pads(in_shape[2], kw, sw, dw)
        return [top, left, bottom, right]

    def options(self, op, cls):
        table = op.BuiltinOptions()
        opts = cls()
        opts.Init(table.Bytes, table.Pos)
        return opts

    def convert_op(self, op):
        code = self.model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = tflite.opcode2name(builtin)
        ins = [op.Inputs(k) for k in range(op.InputsLength())]
        out = op.Outputs(0)
        B = tflite.BuiltinOperator
        if builtin == B.DEQUANTIZE:
            self.consts[out] = self.const(ins[0]).astype(np.float32)
            return
        if builtin == B.CUSTOM:
            custom = code.CustomCode().decode()
            if custom != "Convolution2DTransposeBias":
                raise ValueError(f"custom operator {custom} is not supported")
            padding, stride_w, stride_h = struct.unpack("<iii", op.CustomOptionsAsNumpy().tobytes()[:12])
            w = self.const(ins[1])  # [O, KH, KW, I]
            b = self.const(ins[2])
            kh, kw = w.shape[1], w.shape[2]
            in_shape, out_shape = self.shape(ins[0]), self.shape(out)
            pads = [0, 0, 0, 0]
            if padding == SAME:
                th = max((in_shape[1] - 1) * stride_h + kh - out_shape[1], 0)
                tw = max((in_shape[2] - 1) * stride_w + kw - out_shape[2], 0)
                pads = [th // 2, tw // 2, th - th // 2, tw - tw // 2]
            y = self.node(
                "ConvTranspose",
                [self.names[ins[0]], self.initializer(w.transpose(3, 0, 1, 2).astype(np.float32), "weight"), self.initializer(b.astype(np.float32), "bias")],
                "deconv", kernel_shape=[kh, kw], strides=[stride_h, stride_w], pads=pads,
            )
            self.names[out] = y
            return
        if builtin == B.CONV_2D:
            o = self.options(op, tflite.Conv2DOptions)
            w = self.const(ins[1])  # [O, KH, KW, I]
            kh, kw = w.shape[1], w.shape[2]
            pads = self.conv_pads(o.Padding(), self.shape(ins[0]), kh, kw, o.StrideH(), o.StrideW(), o.DilationHFactor(), o.DilationWFactor())
            inputs = [self.names[ins[0]], self.initializer(w.transpose(0, 3, 1, 2).astype(np.float32), "weight")]
            if len(ins) > 2 and ins[2] >= 0:
                inputs.append(self.initializer(self.const(ins[2]).astype(np.float32), "bias"))
            y = self.node("Conv", inputs, "conv", kernel_shape=[kh, kw], strides=[o.StrideH(), o.StrideW()],
                          dilations=[o.DilationHFactor(), o.DilationWFactor()], pads=pads)
            self.names[out] = self.activation(y, o.FusedActivationFunction())
            return
        if builtin == B.DEPTHWISE_CONV_2D:
            o = self.options(op, tflite.DepthwiseConv2DOptions)
            w = self.const(ins[1])  # [1, KH, KW, C * multiplier]
            kh, kw, channels_out = w.shape[1], w.shape[2], w.shape[3]
            groups = self.shape(ins[0])[3]
            pads = self.conv_pads(o.Padding(), self.shape(ins[0]), kh, kw, o.StrideH(), o.StrideW(), o.DilationHFactor(), o.DilationWFactor())
            inputs = [self.names[ins[0]], self.initializer(w.transpose(3, 0, 1, 2).reshape(channels_out, 1, kh, kw).astype(np.float32), "weight")]
            if len(ins) > 2 and ins[2] >= 0:
                inputs.append(self.initializer(self.const(ins[2]).astype(np.float32), "bias"))
            y = self.node("Conv", inputs, "dwconv", kernel_shape=[kh, kw], strides=[o.StrideH(), o.StrideW()],
                          dilations=[o.DilationHFactor(), o.DilationWFactor()], pads=pads, group=groups)
            self.names[out] = self.activation(y, o.FusedActivationFunction())
            return
        if builtin in (B.ADD, B.MUL):
            o = self.options(op, tflite.AddOptions if builtin == B.ADD else tflite.MulOptions)
            y = self.node("Add" if builtin == B.ADD else "Mul", [self.operand(ins[0]), self.operand(ins[1])], name.lower())
            self.names[out] = self.activation(y, o.FusedActivationFunction())
            return
        if builtin in (B.RELU, B.LOGISTIC, B.HARD_SWISH):
            onnx_op = {B.RELU: "Relu", B.LOGISTIC: "Sigmoid", B.HARD_SWISH: "HardSwish"}[builtin]
            self.names[out] = self.node(onnx_op, [self.names[ins[0]]], onnx_op.lower())
            return
        if builtin == B.AVERAGE_POOL_2D:
            o = self.options(op, tflite.Pool2DOptions)
            kh, kw = o.FilterHeight(), o.FilterWidth()
            pads = self.conv_pads(o.Padding(), self.shape(ins[0]), kh, kw, o.StrideH(), o.StrideW())
            y = self.node("AveragePool", [self.names[ins[0]]], "avgpool", kernel_shape=[kh, kw],
                          strides=[o.StrideH(), o.StrideW()], pads=pads, count_include_pad=0)
            self.names[out] = self.activation(y, o.FusedActivationFunction())
            return
        if builtin == B.MEAN:
            o = self.options(op, tflite.ReducerOptions)
            nhwc_to_nchw = {0: 0, 1: 2, 2: 3, 3: 1}
            axes = sorted(nhwc_to_nchw[int(a) % 4] for a in self.const(ins[1]).reshape(-1))
            if not o.KeepDims() or axes != [2, 3]:
                raise ValueError("MEAN is supported over height and width with keep_dims")
            self.names[out] = self.node("ReduceMean", [self.names[ins[0]]], "mean", axes=axes, keepdims=1)
            return
        if builtin == B.RESIZE_BILINEAR:
            o = self.options(op, tflite.ResizeBilinearOptions)
            h, w = (int(v) for v in self.const(ins[1]).reshape(-1))
            channels = self.shape(ins[0])[3]
            mode = "align_corners" if o.AlignCorners() else "half_pixel" if o.HalfPixelCenters() else "asymmetric"
            self.names[out] = self.node(
                "Resize",
                [self.names[ins[0]], "", "", self.initializer(np.array([1, channels, h, w], np.int64), "sizes")],
                "resize", mode="linear", coordinate_transformation_mode=mode,
            )
            return
        raise ValueError(f"operator {name} is not supported")

    def convert(self):
        g = self.graph
        if g.InputsLength() != 1 or g.OutputsLength() != 1:
            raise ValueError("expected one input and one output")
        i, o = g.Inputs(0), g.Outputs(0)
        in_shape, out_shape = self.shape(i), self.shape(o)
        self.names[i] = self.node("Transpose", ["input"], "to_nchw", perm=[0, 3, 1, 2])
        for k in range(g.OperatorsLength()):
            self.convert_op(g.Operators(k))
        self.nodes.append(helper.make_node("Transpose", [self.names[o]], ["output"], name="to_nhwc", perm=[0, 2, 3, 1]))
        graph = helper.make_graph(
            self.nodes, "selfie_segmentation",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)],
            self.initializers,
        )
        model = helper.make_model(graph, producer_name="meeting-agent convert_selfie_tflite.py",
                                  opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        return model


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], "rb") as f:
        model = Converter(f.read()).convert()
    with open(sys.argv[2], "wb") as f:
        f.write(model.SerializeToString())


if __name__ == "__main__":
    main()
