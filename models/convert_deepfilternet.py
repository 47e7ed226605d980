#!/usr/bin/env python3
"""DeepFilterNet3's ONNX export (three whole-sequence graphs: enc, erb_dec, df_dec) made into one
graph that runs a single 10 ms frame at a time, with all of its memory as one flat state tensor.

The export's graphs start every call from zeros: each GRU's initial hidden state is a constant,
and the three convolutions that look back in time (the encoder's two 3x3 input convolutions,
the DF decoder's 5x1 pathway convolution) get their history from a zero Pad in front of them.
Streaming needs that memory carried from frame to frame, so this script
  * replaces each GRU's initial state by a slice of the `state` input and returns its final
    state (the GRU's second output),
  * replaces each causal time Pad (front padding only) by a concatenation of the last frames,
    taken from `state`, with the current frame, and returns the newest frames again,
  * joins the three graphs (the encoder's embedding and skip outputs feed the decoders).
Inputs: feat_erb [1,1,1,32], feat_spec [1,2,1,96], state [N]. Outputs: lsnr [1,1,1],
m [1,1,1,32] (ERB gains), coefs [1,1,96,10] (deep-filter coefficients), state_out [N].
Before writing, the script checks (with ONNX's reference evaluator) that running the result
frame by frame gives what the original graphs give over a whole sequence.

usage: convert_deepfilternet.py ENC ERB_DEC DF_DEC OUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

HIDDEN = 256


def probe_pads(model, feeds):
    """Each Pad node's pads and its input's shape, evaluated on a 3-frame input."""
    pads = [n for n in model.graph.node if n.op_type == "Pad"]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = [x for n in pads for x in (n.input[0], n.input[1])]
    for name in names:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None))
    values = ReferenceEvaluator(probe).run(names, feeds)
    found = {}
    for i, node in enumerate(pads):
        shape, p = values[2 * i].shape, [int(v) for v in values[2 * i + 1]]
        # NCHW, pads = [begin N, C, T, F, end N, C, T, F]: only causal time padding is expected.
        if p[:2] != [0, 0] or p[3:] != [0, 0, 0, 0, 0] or p[2] <= 0:
            sys.exit(f"unexpected Pad {node.name}: {p}")
        found[node.name] = (p[2], shape[1], shape[3])
    return found


class Streamer:
    def __init__(self):
        self.nodes, self.inits, self.states = [], [], []  # states: (name, shape)
        self.offset = 0

    def const(self, name, values):
        self.inits.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
        return name

    def state_in(self, name, shape):
        """A slice of the flat `state` input, reshaped to `shape`."""
        size = int(np.prod(shape))
        start, end = self.offset, self.offset + size
        self.offset = end
        self.states.append((name, shape))
        flat = f"{name}/flat"
        self.nodes.append(helper.make_node(
            "Slice", ["state", self.const(f"{name}/start", [start]), self.const(f"{name}/end", [end]),
                      self.const(f"{name}/axis", [0])], [flat], name=f"{name}/slice"))
        self.nodes.append(helper.make_node(
            "Reshape", [flat, self.const(f"{name}/shape", list(shape))], [name], name=f"{name}/reshape"))
        return name

    def rewrite(self, graph, prefix, pads):
        for node in graph.node:
            if node.op_type == "GRU":
                h_in = self.state_in(f"{prefix}{node.name}/h_in", (1, 1, HIDDEN))
                node.input[5] = h_in
                if not node.output[1]:
                    sys.exit(f"{node.name} has no final-state output")
                self.outputs.append(node.output[1])
            elif node.op_type == "Pad":
                frames, channels, freqs = pads[node.name]
                past = self.state_in(f"{prefix}{node.name}/past", (1, channels, frames, freqs))
                x, y = node.input[0], node.output[0]
                node.op_type = "Concat"
                del node.input[:]
                node.input.extend([past, x])
                del node.attribute[:]
                node.attribute.append(helper.make_attribute("axis", 2))
                keep = f"{prefix}{node.name}/keep"
                self.extra.append(helper.make_node(
                    "Slice", [y, self.const(f"{keep}/start", [-frames]),
                              self.const(f"{keep}/end", [2**62]), self.const(f"{keep}/axis", [2])],
                    [keep], name=keep))
                self.outputs.append(keep)


def topological(nodes, inits):
    """Nodes ordered so each comes after what produces its inputs (ONNX requires it)."""
    ready = {"feat_erb", "feat_spec", "state", ""} | {i.name for i in inits}
    ordered, waiting = [], list(nodes)
    while waiting:
        left = []
        for n in waiting:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                left.append(n)
        if len(left) == len(waiting):
            sys.exit(f"cycle or missing input at {left[0].name}: {list(left[0].input)}")
        waiting = left
    return ordered


def check_streaming(model, enc_path, erb_path, df_path, state_len, frames=6):
    """The streaming graph, frame by frame, against the originals over the whole sequence."""
    r = np.random.default_rng(1)
    erb = (r.standard_normal((1, 1, frames, 32)) * 0.5).astype(np.float32)
    spec = (r.standard_normal((1, 2, frames, 96)) * 0.5).astype(np.float32)
    e0, e1, e2, e3, emb, c0, lsnr = ReferenceEvaluator(enc_path).run(None, {"feat_erb": erb, "feat_spec": spec})
    (m,) = ReferenceEvaluator(erb_path).run(None, {"emb": emb, "e3": e3, "e2": e2, "e1": e1, "e0": e0})
    (coefs,) = ReferenceEvaluator(df_path).run(["coefs"], {"emb": emb, "c0": c0})
    stream = ReferenceEvaluator(model)
    state = np.zeros(state_len, np.float32)
    for t in range(frames):
        l, mm, cc, state = stream.run(None, {"feat_erb": erb[:, :, t:t + 1], "feat_spec": spec[:, :, t:t + 1], "state": state})
        worst = max(abs(l.ravel() - lsnr[0, t]).max(), abs(mm.ravel() - m[0, 0, t]).max(),
                    abs(cc.ravel() - coefs[0, t].ravel()).max())
        if worst > 1e-4:
            sys.exit(f"the streaming graph differs from the original at frame {t}: {worst}")


def main(enc_path, erb_path, df_path, out_path):
    graphs = {"enc": onnx.load(enc_path), "erb": onnx.load(erb_path), "df": onnx.load(df_path)}
    r = np.random.default_rng(0)
    rand = lambda *s: r.standard_normal(s).astype(np.float32)
    pads = {
        "enc": probe_pads(graphs["enc"], {"feat_erb": rand(1, 1, 3, 32), "feat_spec": rand(1, 2, 3, 96)}),
        "erb": {},
        "df": probe_pads(graphs["df"], {"emb": rand(1, 3, 512), "c0": rand(1, 64, 3, 96)}),
    }
    s = Streamer()
    s.outputs, s.extra = [], []
    nodes, inits = [], []
    for prefix, model in graphs.items():
        model = onnx.compose.add_prefix(model, prefix + "/")
        pads_p = {prefix + "/" + k: v for k, v in pads[prefix].items()}
        s.rewrite(model.graph, "", pads_p)
        nodes.extend(model.graph.node)
        inits.extend(model.graph.initializer)
    # The encoder's outputs feed the decoders; the graph's own inputs feed the encoder.
    wires = [("feat_erb", "enc/feat_erb"), ("feat_spec", "enc/feat_spec"),
             ("enc/emb", "erb/emb"), ("enc/e3", "erb/e3"), ("enc/e2", "erb/e2"),
             ("enc/e1", "erb/e1"), ("enc/e0", "erb/e0"), ("enc/emb", "df/emb"), ("enc/c0", "df/c0"),
             ("enc/lsnr", "lsnr"), ("erb/m", "m"), ("df/coefs", "coefs")]
    wiring = [helper.make_node("Identity", [a], [b], name=f"wire/{b}") for a, b in wires]
    flat = [f"{o}/flat" for o in s.outputs]
    packing = [helper.make_node("Reshape", [o, s.const(f"{o}/minus1", [-1])], [f], name=f"{f}/pack")
               for o, f in zip(s.outputs, flat)]
    packing.append(helper.make_node("Concat", flat, ["state_out"], axis=0, name="state_out/concat"))
    n = s.offset
    graph = helper.make_graph(
        topological(wiring + s.nodes + nodes + s.extra + packing, inits + s.inits),
        "deepfilternet3_stream",
        [helper.make_tensor_value_info("feat_erb", TensorProto.FLOAT, [1, 1, 1, 32]),
         helper.make_tensor_value_info("feat_spec", TensorProto.FLOAT, [1, 2, 1, 96]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [n])],
        [helper.make_tensor_value_info("lsnr", TensorProto.FLOAT, [1, 1, 1]),
         helper.make_tensor_value_info("m", TensorProto.FLOAT, [1, 1, 1, 32]),
         helper.make_tensor_value_info("coefs", TensorProto.FLOAT, [1, 1, 96, 10]),
         helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [n])],
        inits + s.inits,
    )
    # The order of `state` must match the order of `state_out`: both follow the rewrite order.
    assert [name for name, _ in s.states] and len(s.states) == len(s.outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)],
                              producer_name="meeting-agent models/convert_deepfilternet.py")
    model.ir_version = graphs["enc"].ir_version
    onnx.checker.check_model(model)
    check_streaming(model, enc_path, erb_path, df_path, n)
    onnx.save(model, out_path)
    for name, shape in s.states:
        print(f"state {name}: {list(shape)}", file=sys.stderr)
    print(f"state size {n} floats; wrote {out_path}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
