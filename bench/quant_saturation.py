"""Why the INT8 model's matrix-product weights are pair-bounded: plain 8-bit, 7-bit and pair-bounded 8-bit weights
(the store's, with nearest rounding and without bias correction so that only the weights differ), each as computed
by this CPU's integer kernels and with its quantization emulated in float (what a CPU whose kernels do not saturate
computes).

    python bench/quant_saturation.py [--views]

x86 CPUs without VNNI multiply uint8 activations by int8 weights with `pmaddubsw`, which adds pairs of products
into a saturating int16: with 8-bit weights (|w| <= 127, a <= 255) a pair can exceed 32767 and is clipped.
ONNX Runtime with graph optimizations off runs the QDQ model as DequantizeLinear + float Conv, so nothing saturates.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgewasm.models import _accuracy, _calibration, _quantize, default_store


def _runner(path: Path, optimized: bool) -> _accuracy.Runner:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    if not optimized:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda batch: np.concatenate([session.run(None, {"input": batch[i : i + 1]})[0] for i in range(len(batch))])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--views", action="store_true", help="also the flipped and cropped images")
    args = ap.parse_args(argv)
    src = default_store() / "efficientnet-lite0" / "model.onnx"
    photos = _calibration.calibration_photos()
    calib = _calibration.calibration_tensors(photos)
    items, sources = _accuracy.natural_photos(_accuracy.labeled_photos())
    _, batch = _accuracy.tensors(items, with_views=args.views)
    ref = _accuracy.onnx_runner(src)(batch)
    print(f"{len(batch)} images ({', '.join(sources)}{', with views' if args.views else ''}); calibration: "
          f"{len(photos)} photos of the default set\n")  # fmt: skip
    print("| weights | kernels | agreement with FP32 | logit error max / mean |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        schemes = (("8-bit", "8-bit everywhere"), ("7-bit", "7-bit matrix products"),
                   ("pair-bounded", "pair-bounded 8-bit matrix products (installed)"))  # fmt: skip
        for scheme, label in schemes:
            path = Path(tmp) / f"int8-{scheme}.onnx"
            _quantize.onnx_int8(src, path, calib, weights=scheme, rounding="nearest", bias_correction=False)
            for optimized, kernels in ((True, "this CPU's integer kernels"), (False, "emulated in float")):
                a = _accuracy.agreement(ref, _runner(path, optimized)(batch))
                print(f"| {label} | {kernels} | {a.top1_equal}/{a.count} = {a.fraction:.1%} | "
                      f"{a.max_abs:.2f} / {a.mean_abs:.3f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
