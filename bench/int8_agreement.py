"""Agreement of INT8 models with FP32, quickly: the installed variant, or models built here with either rounding.

    python bench/int8_agreement.py                          the installed efficientnet-lite0-int8 (ORT and OpenVINO)
    python bench/int8_agreement.py --build nearest --build adaptive     recipe 2's rounding and recipe 3's, built
                                                            from the store's FP32 model on the default calibration set

On the images of bench/quantization.py (every natural photo available, each flipped and cropped; the 20 labeled
photos for top-1): top-1 agreement with ONNX Runtime FP32 on all of them, on the held-out ones (the views of photos
that are not in the calibration set) and where FP32 is sure (probability >= 0.5); max and mean logit error; labeled
top-1. OpenVINO runs the model converted as the store converts it (``_quantize.openvino_from_qdq``). No timing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgewasm.models import _accuracy, _calibration, _quantize, default_store

BASE, INT8 = "efficientnet-lite0", "efficientnet-lite0-int8"


def _line(tag: str, ref: np.ndarray, got: np.ndarray, held: np.ndarray, sure: np.ndarray, labeled: int) -> str:
    a = _accuracy.agreement(ref, got)
    eq = np.argmax(got, 1) == np.argmax(ref, 1)
    return (f"{tag}: agreement {a.top1_equal}/{a.count} = {a.fraction:.1%}; held out {eq[held].sum()}/{held.sum()} = "
            f"{eq[held].mean():.1%}; where FP32 is sure {eq[sure].sum()}/{sure.sum()}; logit error max "
            f"{a.max_abs:.2f} mean {a.mean_abs:.3f}; labeled top-1 {labeled}/20")  # fmt: skip


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--build", action="append", choices=_quantize.ROUNDINGS, default=[],
                    help="build a model with this rounding (pair-bounded, bias-corrected) and measure it")  # fmt: skip
    ap.add_argument("--no-openvino", action="store_true")
    args = ap.parse_args(argv)
    store = args.store or default_store()
    labeled = _accuracy.labeled_photos()
    _, lab = _accuracy.tensors([(p.name, p.data) for p in labeled], with_views=False)
    labels = [p.label for p in labeled]
    items, sources = _accuracy.natural_photos(labeled)
    names, batch = _accuracy.tensors(items)
    calibration = _calibration.calibration_photos()
    seen = {p.name for p in calibration}
    held = np.array([n.split("#")[0] not in seen for n in names])
    fp32 = _accuracy.onnx_runner(store / BASE / "model.onnx")
    ref = fp32(batch)
    p = np.exp(ref - ref.max(1, keepdims=True))
    sure = (p / p.sum(1, keepdims=True)).max(1) >= 0.5
    print(f"{len(names)} images ({', '.join(sources)}; 4 views a photo), {held.sum()} held out; calibration: "
          f"{len(calibration)} photos; FP32 labeled top-1 {_accuracy.top1_correct(fp32(lab), labels)}/20")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgewasm-int8-agreement-") as tmp:
        models: list[tuple[str, Path]] = []
        if args.build:
            cal = _calibration.calibration_tensors(calibration)
            for rounding in args.build:
                path = Path(tmp) / f"{rounding}.onnx"
                _quantize.onnx_int8(store / BASE / "model.onnx", path, cal, rounding=rounding)
                models.append((f"{rounding} rounding", path))
        else:
            models.append((f"installed {INT8}", store / INT8 / "model.onnx"))
        for tag, path in models:
            run = _accuracy.onnx_runner(path)
            print(_line(f"{tag}, ONNX Runtime", ref, run(batch), held, sure, _accuracy.top1_correct(run(lab), labels)))
            if not args.no_openvino:
                xml = Path(tmp) / tag.replace(" ", "_") / "model.xml"
                _quantize.openvino_from_qdq(path, xml)
                ov = _accuracy.openvino_runner(xml)
                print(_line(f"{tag}, OpenVINO", ref, ov(batch), held, sure, _accuracy.top1_correct(ov(lab), labels)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
