"""End-to-end classification through WASI-NN (ONNX backend) vs ONNX Runtime called directly from Python on the
same tensor, in interleaved pairs. The goal is <= 1.1x; `make bench` measures it too (bench/test_pipeline.py).

    python bench/nn_paired.py [ITERATIONS]      prints the measurement (docs/wasi-nn.md quotes it)
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import edgewasm

WASM = Path(__file__).resolve().parent.parent / "wasm"


def measure(store: Path, iterations: int) -> dict[str, Any]:
    """Interleaved pairs (direct ORT, then the guest) so both see the same machine load."""
    import onnxruntime as ort
    import skimage.data

    from edgewasm.models._preprocess import preprocess_pixels

    entry = store / "efficientnet-lite0"
    hwc = preprocess_pixels(skimage.data.chelsea()).astype(np.float32)
    nchw = np.ascontiguousarray(hwc.transpose(2, 0, 1)[None])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1  # the WASI-NN ONNX backend's default
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(entry / "model.onnx"), so, providers=["CPUExecutionProvider"])
    preload = f"efficientnet-lite0:ONNX:CPU:{entry / 'model.onnx'}"
    with edgewasm.load(WASM / "wasinn_classifier.wasm", models=str(store), nn_preload=[preload]) as guest:
        request = {"tensor": hwc}
        for _ in range(5):
            guest.infer(request)
            sess.run(None, {"input": nchw})
        direct, wasinn, inside = [], [], []
        for _ in range(iterations):
            t0 = time.perf_counter()
            sess.run(None, {"input": nchw})
            t1 = time.perf_counter()
            reply = guest.infer(request)
            t2 = time.perf_counter()
            direct.append((t1 - t0) * 1e3)
            wasinn.append((t2 - t1) * 1e3)
            inside.append(reply["stages_ms"]["inference"])
    d, w = statistics.median(direct), statistics.median(wasinn)
    return {
        "iterations": iterations,
        "direct_ms": d,
        "wasinn_ms": w,
        "ratio": w / d,
        "ratio_of_minima": min(wasinn) / min(direct),
        "guest_inference_stage_ms": statistics.median(inside),
        "class_id": reply["class_id"],
    }


if __name__ == "__main__":
    from edgewasm.models import default_store

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    r = measure(default_store(), n)
    print(
        f"{r['iterations']} interleaved pairs: ONNX Runtime direct {r['direct_ms']:.2f} ms, "
        f"WASI-NN end to end {r['wasinn_ms']:.2f} ms (median), ratio {r['ratio']:.3f} "
        f"(of minima {r['ratio_of_minima']:.3f}); the guest's inference stage {r['guest_inference_stage_ms']:.2f} ms"
    )
else:
    from _model_fixtures import model_store  # noqa: F401  (fixture)
