#!/usr/bin/env python3
"""Quantize a whisper.cpp GGML model (f16 or f32) to q8_0 or q5_1, as whisper.cpp's `quantize` does.

The output is what whisper.cpp's examples/quantize (with ggml's ggml_common_quantize_0) writes:

- magic, the hyper-parameters with ftype = GGML_QNT_VERSION * GGML_QNT_VERSION_FACTOR + the
  target ftype (2 * 1000 + 7 for q8_0, 2 * 1000 + 9 for q5_1), the mel filters and the vocabulary
  copied unchanged;
- every tensor with the same header (n_dims, name length, ttype, dims, name; no alignment), the
  2-D ones quantized except the conv biases and positional embeddings, which are copied as they
  are, like the 1-D vectors and the 3-D conv weights.

The blocks are ggml's reference ones (ggml-quants.c, quantize_row_q8_0_ref and
quantize_row_q5_1_ref, which ggml_quantize_chunk uses without an importance matrix), computed in
float32 with the same operations and rounding, so the result is byte-identical to the tool's:
  q8_0: 32 weights -> f16 d = max|x| / 127, then 32 x int8 roundf(x * (1 / d))      (34 bytes)
  q5_1: 32 weights -> f16 d = (max - min) / 31, f16 m = min, u32 qh (5th bits),
        16 bytes of low nibbles (weight j low, weight j + 16 high), q = (int)((x - min) * (1 / d) + 0.5)
                                                                                    (24 bytes)
One deliberate difference: from an f32 model the tool copies the 3-D conv weights as f32, which
whisper.cpp's loader rejects in a quantized model (it wants them f16); this writes them as f16.

Usage: quantize_ggml.py IN.bin OUT.bin q8_0|q5_1
Needs numpy only.
"""
import re
import struct
import sys

import numpy as np

GGML_MAGIC = 0x67676D6C  # "ggml"
GGML_QNT_VERSION = 2
GGML_QNT_VERSION_FACTOR = 1000
TYPE_F32, TYPE_F16, TYPE_Q5_1, TYPE_Q8_0 = 0, 1, 7, 8  # enum ggml_type
FTYPES = {"q8_0": (7, TYPE_Q8_0), "q5_1": (9, TYPE_Q5_1)}  # name: (enum ggml_ftype, ggml_type)
QK = 32  # weights per block, both types
# whisper.cpp's examples/quantize: these 2-D tensors stay as they are.
TO_SKIP = [r"encoder.conv1.bias", r"encoder.conv2.bias", r"encoder.positional_embedding", r"decoder.positional_embedding"]
HPARAMS = ["n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
           "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_mels", "ftype"]
BLOCK_Q8_0 = np.dtype([("d", "<f2"), ("qs", "i1", QK)])
BLOCK_Q5_1 = np.dtype([("d", "<f2"), ("m", "<f2"), ("qh", "<u4"), ("qs", "u1", QK // 2)])
CHUNK = 1 << 15  # blocks per numpy pass, to bound memory


class BadModel(Exception):
    pass


class Reader:
    def __init__(self, data, path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, n, what):
        if n < 0 or self.pos + n > len(self.data):
            raise BadModel(f"{self.path}: truncated: {what} needs {n} bytes at offset {self.pos}, "
                           f"the file has {len(self.data) - self.pos} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def ints(self, count, what, fmt="i"):
        return struct.unpack(f"<{count}{fmt}", self.take(4 * count, what))

    def left(self):
        return len(self.data) - self.pos


def f32_round_half_away(x):
    """C's roundf on float32 values (numpy's round is half-to-even)."""
    t = np.trunc(x)
    return t + np.sign(x) * (np.abs(x - t) >= np.float32(0.5))  # x - t is exact


def inverse(d):
    """1.0f / d, or 0 where d == 0, in float32."""
    out = np.zeros_like(d)
    np.divide(np.float32(1.0), d, out=out, where=d != 0)
    return out


def quantize_q8_0(x):
    """x: float32 (nb, 32) -> BLOCK_Q8_0 (nb,), as quantize_row_q8_0_ref."""
    amax = np.abs(x).max(axis=1)
    d = amax / np.float32(127)
    q = f32_round_half_away(x * inverse(d)[:, None])
    out = np.empty(len(x), BLOCK_Q8_0)
    out["d"] = d.astype(np.float16)  # round to nearest even, as GGML_FP32_TO_FP16
    out["qs"] = q.astype(np.int8)
    return out


def first_equal(x, value):
    """Per row, the first element equal to value (so a zero keeps the sign C's scan would keep)."""
    return x[np.arange(len(x)), np.argmax(x == value[:, None], axis=1)]


def quantize_q5_1(x):
    """x: float32 (nb, 32) -> BLOCK_Q5_1 (nb,), as quantize_row_q5_1_ref."""
    lo, hi = x.min(axis=1), x.max(axis=1)
    # The C loop keeps the first of equal extremes; only the sign of a zero can tell them apart.
    z = lo == 0
    lo[z] = first_equal(x[z], lo[z])
    z = hi == 0
    hi[z] = first_equal(x[z], hi[z])
    d = (hi - lo) / np.float32(31)
    scaled = (x - lo[:, None]) * inverse(d)[:, None] + np.float32(0.5)
    q = scaled.astype(np.int32).astype(np.uint32)  # (uint8_t) truncates; values are 0..31
    out = np.empty(len(x), BLOCK_Q5_1)
    out["d"] = d.astype(np.float16)
    out["m"] = lo.astype(np.float16)
    out["qh"] = (((q >> 4) & 1) << np.arange(QK, dtype=np.uint32)).sum(axis=1, dtype=np.uint32)
    out["qs"] = ((q[:, :QK // 2] & 0x0F) | ((q[:, QK // 2:] & 0x0F) << 4)).astype(np.uint8)
    return out


def quantize_tensor(values, qtype):
    blocks = values.reshape(-1, QK)
    fn = quantize_q8_0 if qtype == TYPE_Q8_0 else quantize_q5_1
    return b"".join(fn(blocks[i:i + CHUNK].astype(np.float32)).tobytes() for i in range(0, len(blocks), CHUNK))


def quantize(in_path, out_path, target):
    if target not in FTYPES:
        raise BadModel(f"unknown type {target!r}: q8_0 or q5_1")
    ftype, qtype = FTYPES[target]
    with open(in_path, "rb") as f:
        r = Reader(f.read(), in_path)
    out = []

    (magic,) = r.ints(1, "magic", "I")
    if magic != GGML_MAGIC:
        raise BadModel(f"{in_path}: not a GGML model (bad magic 0x{magic:08x})")
    hp = dict(zip(HPARAMS, r.ints(len(HPARAMS), "hyper-parameters")))
    if min(v for k, v in hp.items() if k != "ftype") <= 0:
        raise BadModel(f"{in_path}: invalid hyper-parameters {hp}")
    if hp["ftype"] not in (0, 1):
        raise BadModel(f"{in_path}: ftype {hp['ftype']} (qntvr {hp['ftype'] // GGML_QNT_VERSION_FACTOR}, "
                       f"type {hp['ftype'] % GGML_QNT_VERSION_FACTOR}): only f32 (0) or f16 (1) models can be quantized")
    src_ftype = hp["ftype"]
    hp["ftype"] = GGML_QNT_VERSION * GGML_QNT_VERSION_FACTOR + ftype
    out.append(struct.pack("<I11i", magic, *hp.values()))

    n_mel, n_fft = r.ints(2, "mel filter shape")
    if n_mel <= 0 or n_fft <= 0:
        raise BadModel(f"{in_path}: invalid mel filter shape {n_mel} x {n_fft}")
    out.append(struct.pack("<ii", n_mel, n_fft) + r.take(4 * n_mel * n_fft, "mel filters"))

    (n_vocab,) = r.ints(1, "vocabulary size")
    if n_vocab < 0:
        raise BadModel(f"{in_path}: invalid vocabulary size {n_vocab}")
    start = r.pos - 4
    for i in range(n_vocab):
        (length,) = r.ints(1, f"token {i}", "I")
        r.take(length, f"token {i}")
    out.append(r.data[start:r.pos])

    size_in = size_out = count = quantized = 0
    while r.left():
        n_dims, length, ttype = r.ints(3, "tensor header")
        if not 1 <= n_dims <= 4 or not 0 < length <= 4096:
            raise BadModel(f"{in_path}: corrupt tensor header at offset {r.pos - 12}: n_dims {n_dims}, name length {length}")
        ne = r.ints(n_dims, "tensor dimensions")
        raw_name = r.take(length, "tensor name")
        try:
            name = raw_name.decode()
        except UnicodeDecodeError:
            raise BadModel(f"{in_path}: corrupt tensor name at offset {r.pos - length}: {raw_name[:64]!r}") from None
        if min(ne) <= 0:
            raise BadModel(f"{in_path}: tensor {name} has dimensions {ne}")
        if ttype not in (TYPE_F32, TYPE_F16):
            raise BadModel(f"{in_path}: tensor {name} has type {ttype}; only f32 (0) and f16 (1) can be quantized")
        n = int(np.prod(ne, dtype=np.int64))
        dtype = np.float32 if ttype == TYPE_F32 else np.float16
        data = r.take(n * np.dtype(dtype).itemsize, f"tensor {name} ({'x'.join(map(str, ne))}, {dtype.__name__})")
        size_in += len(data)
        count += 1
        header = lambda t: struct.pack(f"<iii{n_dims}i", n_dims, length, t, *ne) + raw_name
        if n_dims == 2 and not any(re.fullmatch(s, name) for s in TO_SKIP):
            if ne[0] % QK:
                raise BadModel(f"{in_path}: tensor {name}: rows of {ne[0]} are not a multiple of {QK}")
            values = np.frombuffer(data, dtype)
            if not np.isfinite(values).all():
                raise BadModel(f"{in_path}: tensor {name} holds NaN or infinite values")
            data = quantize_tensor(values, qtype)
            out.append(header(qtype))
            quantized += 1
        elif n_dims == 3 and ttype == TYPE_F32:
            # The conv weights: a quantized model keeps them in f16 (whisper_model_load's vtype).
            data = np.frombuffer(data, np.float32).astype(np.float16).tobytes()
            out.append(header(TYPE_F16))
        else:
            out.append(header(ttype))
        out.append(data)
        size_out += len(data)
    if count == 0:
        raise BadModel(f"{in_path}: no tensors")

    with open(out_path, "wb") as f:
        for chunk in out:
            f.write(chunk)
    print(f"{out_path}: {target} (ftype {hp['ftype']}) from {'f16' if src_ftype else 'f32'}, {count} tensors, "
          f"{quantized} quantized, weights {size_in / 1e6:.2f} MB -> {size_out / 1e6:.2f} MB", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    try:
        quantize(*sys.argv[1:])
    except (BadModel, OSError) as e:
        raise SystemExit(f"quantize_ggml: error: {e}")
