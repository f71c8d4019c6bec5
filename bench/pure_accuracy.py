"""Accuracy of the pure guest's INT8 network against ONNX Runtime's INT8 model (issue 13).

    python bench/pure_accuracy.py [--store DIR] [--no-views]

On the 20 labeled ImageNet photos of the foolbox wheel (``edgewasm.models._accuracy``; downloaded with pip into
a cache outside the repository): top-1 correct for ONNX Runtime FP32 and INT8 (the variant's model.onnx) and
the pure guest's FP32 and INT8, and on which photos the pure INT8 top-1 differs from ONNX Runtime INT8's. On
every natural photo available (calibration sets and the labeled photos, each flipped and cropped): agreement
of each INT8 with FP32 (top-1 equal; max and mean logit error), and the pure INT8 logits against ONNX Runtime
INT8's (both quantize the same weights; the activations differ by one bit).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

import edgewasm

WASM = Path(__file__).resolve().parent.parent / "wasm"
FP32, INT8 = "efficientnet-lite0", "efficientnet-lite0-int8"


def guest_runner(guest: edgewasm.Guest, model_id: str) -> Any:
    def run(batch: np.ndarray) -> np.ndarray:
        out = []
        for x in batch:
            hwc = np.ascontiguousarray(x.transpose(1, 2, 0), dtype=np.float32)
            reply = guest.infer({"tensor": hwc, "model_id": model_id, "return_logits": True})
            out.append(np.asarray(reply["logits"], np.float32))
        return np.stack(out)

    return run


def main() -> None:
    from edgewasm.models import _accuracy
    from edgewasm.models._store import default_store

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--no-views", action="store_true", help="natural photos without their flips and crops")
    args = ap.parse_args()
    store = args.store or default_store()
    with edgewasm.load(WASM / "classifier_relaxed.wasm", timeout=600, models=store) as guest:
        runners = {
            "ORT FP32": _accuracy.onnx_runner(store / FP32 / "model.onnx"),
            "ORT INT8": _accuracy.onnx_runner(store / INT8 / "model.onnx"),
            "pure FP32": guest_runner(guest, FP32),
            "pure INT8": guest_runner(guest, INT8),
        }
        labeled = _accuracy.labeled_photos()
        names, batch = _accuracy.tensors([(p.name, p.data) for p in labeled], with_views=False)
        labels = [p.label for p in labeled]
        logits = {k: run(batch) for k, run in runners.items()}
        print(f"labeled photos ({len(labels)}), top-1 correct:")
        for k, v in logits.items():
            print(f"  {k:10s} {_accuracy.top1_correct(v, labels)}/{len(labels)}")
        differ = [
            n
            for n, a, b in zip(names, logits["pure INT8"], logits["ORT INT8"], strict=True)
            if a.argmax() != b.argmax()
        ]
        print(f"  pure INT8 top-1 differs from ORT INT8 on: {', '.join(differ) or 'none'}")
        items, sources = _accuracy.natural_photos(labeled)
        names, batch = _accuracy.tensors(items, with_views=not args.no_views)
        ref = runners["ORT FP32"](batch)
        ort8 = runners["ORT INT8"](batch)
        pure8 = runners["pure INT8"](batch)
        print(f"natural photos ({len(names)} images from {', '.join(sources)}), against ORT FP32:")
        for k, v in {"ORT INT8": ort8, "pure INT8": pure8}.items():
            a = _accuracy.agreement(ref, v)
            print(
                f"  {k:10s} top-1 equal {a.top1_equal}/{a.count} = {a.fraction:.1%}, "
                f"logit error max {a.max_abs:.2f} mean {a.mean_abs:.3f}"
            )
        a = _accuracy.agreement(ort8, pure8)
        print(
            f"  pure INT8 vs ORT INT8: top-1 equal {a.top1_equal}/{a.count} = {a.fraction:.1%}, "
            f"logit difference max {a.max_abs:.2f} mean {a.mean_abs:.3f}"
        )


if __name__ == "__main__":
    main()
