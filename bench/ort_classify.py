"""The article's "Python + ONNX Runtime" row: a plain Python script that classifies a photo with ONNX Runtime.

    python bench/ort_classify.py MODEL_DIR PHOTO.jpg        # prints the answer as JSON

No edgewasm, no WebAssembly: PIL decodes and resizes (bicubic, shorter side 256, centre crop 224), numpy
normalises `(x - 127) / 128`, ONNX Runtime (one thread, like the WASI-NN backend) runs model.onnx. The stage
functions are also what bench/test_pipeline.py times in-process.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def load(model_dir: Path) -> tuple[Any, list[str]]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])
    labels = (model_dir / "labels.txt").read_text(encoding="utf-8").splitlines()
    return session, labels


def decode(jpeg: bytes) -> Any:
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(jpeg))
    image.load()
    return image.convert("RGB")


def preprocess(image: Any) -> np.ndarray:
    """Shorter side to 256 (PIL bicubic), centre crop 224, normalise, NCHW float32 [1, 3, 224, 224]."""
    from PIL import Image

    w, h = image.size
    if w <= h:
        nw, nh = 256, (2 * h * 256 + w) // (2 * w)
    else:
        nw, nh = (2 * w * 256 + h) // (2 * h), 256
    left, top = (nw - 224) // 2, (nh - 224) // 2
    resized = image.resize((nw, nh), Image.Resampling.BICUBIC).crop((left, top, left + 224, top + 224))
    hwc = (np.asarray(resized, dtype=np.float32) - 127.0) / 128.0
    return np.ascontiguousarray(hwc.transpose(2, 0, 1)[None])


def infer(session: Any, nchw: np.ndarray) -> np.ndarray:
    return session.run(None, {"input": nchw})[0][0]  # type: ignore[no-any-return]


def postprocess(logits: np.ndarray, labels: list[str], top_k: int = 5) -> dict[str, Any]:
    p = np.exp(logits - logits.max())
    p /= p.sum()
    top = np.argsort(-p)[:top_k]
    return {
        "label": labels[int(top[0])],
        "class_id": int(top[0]),
        "confidence": float(p[top[0]]),
        "top_k": [{"class_id": int(i), "label": labels[int(i)], "confidence": float(p[i])} for i in top],
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: ort_classify.py MODEL_DIR PHOTO", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    session, labels = load(Path(argv[0]))
    answer = postprocess(infer(session, preprocess(decode(Path(argv[1]).read_bytes()))), labels)
    answer["latency_ms"] = (time.perf_counter() - t0) * 1e3
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
