"""Regenerate the bundled examples from scikit-image's `chelsea` photo (a cat; scikit-image's data, CC0).

    python examples/make_examples.py

cat.jpg: the photo as a JPEG (451x300). cat.json: the article's InferenceRequest: `image_data` as RGB values
0-255 (JSON numbers, read as f32), row-major, with `width`, `height` and `model_id`, from a 224x149 copy so the
file stays small; the guest resizes it like any other image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

HERE = Path(__file__).resolve().parent


def main() -> None:
    photo = Image.fromarray(skimage.data.chelsea())
    photo.save(HERE / "cat.jpg", quality=90)
    width, height = 224, 149
    small = np.asarray(photo.resize((width, height), Image.BICUBIC), dtype=np.uint8)
    request = {
        "model_id": "efficientnet-lite0",
        "width": width,
        "height": height,
        "image_data": small.reshape(-1).tolist(),
    }
    (HERE / "cat.json").write_text(json.dumps(request, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
