#!/usr/bin/env python3
"""Writes MediaPipe's own person masks for the test photograph, the reference the project's
segmentation is checked against (tests/e2e/segmentation.rs). Run once, in a separate venv:

    python3 -m venv /tmp/mp && /tmp/mp/bin/pip install mediapipe==0.10.14 scikit-image==0.26.0
    /tmp/mp/bin/python models/mediapipe_reference_masks.py fixtures/

It runs MediaPipe's legacy selfie segmentation solution (its TFLite runtime with the custom
transpose-convolution op) on scikit-image's `astronaut.png` with both models and saves each
mask as an 8-bit greyscale PNG (probability x 255) at the photograph's size.
"""

import sys

import mediapipe as mp
import numpy as np
import skimage
from PIL import Image


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "fixtures"
    image = skimage.data.astronaut()
    for selection, name in [(0, "general"), (1, "landscape")]:
        with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=selection) as s:
            mask = s.process(image).segmentation_mask
        png = np.clip(np.round(mask * 255), 0, 255).astype(np.uint8)
        Image.fromarray(png, mode="L").save(f"{out}/astronaut-mediapipe-mask-{name}.png", optimize=True)
        print(f"{name}: {float((mask > 0.5).mean()):.3f} of the pixels are the person")


if __name__ == "__main__":
    main()
