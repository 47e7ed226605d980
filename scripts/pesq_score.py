#!/usr/bin/env python3
"""Wide-band PESQ (ITU-T P.862.2, the `pesq` package) for pairs of 16 kHz mono WAV files.
usage: pesq_score.py REF1.wav DEG1.wav [REF2.wav DEG2.wav ...]  -> one score per line (JSON)."""
import json
import sys
import wave

import numpy as np
from pesq import pesq


def read(path):
    with wave.open(path, "rb") as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            sys.exit(f"{path}: expected 16 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0


args = sys.argv[1:]
if not args or len(args) % 2:
    sys.exit(__doc__)
for ref, deg in zip(args[::2], args[1::2]):
    print(json.dumps(pesq(16000, read(ref), read(deg), "wb")))
