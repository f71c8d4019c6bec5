"""The pure-Wasm classifier against ONNX Runtime FP32 on one thread (issue 13), and its load.

    python bench/pure_paired.py [ROUNDS] [--store DIR] [--json FILE]

writes bench/results/pure_paired.json (the figures in docs/classifier.md) unless --json names another file.

Inference: ONNX Runtime FP32 ``run`` and the pure guest's ``stages_ms.inference`` on the same cat tensor, in
interleaved rounds (the order rotates every round), one run: FP32 on plain SIMD (classifier.wasm) and on
relaxed SIMD (classifier_relaxed.wasm: its GEMM on relaxed madd), INT8 on plain SIMD (classifier.wasm, model
``efficientnet-lite0-int8``) and on relaxed SIMD (classifier_relaxed.wasm). Each
ratio is the median of the per-round ratios. The guests run with a timeout, as served (epoch interruption on).

Load, from the warm disk cache: a fresh instance of an already loaded guest until its weights are ready
(instantiation plus the first request's ``stages_ms.load``), and a whole fresh ``edgewasm.load`` plus that;
for the store's packed image (read into memory) and for bundled modules (``edgewasm models bundle``, the
weights mapped from the artifact). Then what the first inference of a fresh instance costs: its time against
the second one's, and the minor page faults of the process during it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import edgewasm

ROOT = Path(__file__).resolve().parent.parent
WASM = ROOT / "wasm"
RESULTS = ROOT / "bench" / "results" / "pure_paired.json"
FP32, INT8 = "efficientnet-lite0", "efficientnet-lite0-int8"
#: name -> (module, model id); bundles are made in a temp dir at start
INFER = {
    "fp32": ("classifier.wasm", FP32),
    "fp32-relaxed": ("classifier_relaxed.wasm", FP32),
    "int8-simd128": ("classifier.wasm", INT8),
    "int8-relaxed": ("classifier_relaxed.wasm", INT8),
}


#: The script's runtime: `load` empties its module cache before each timed load.
RUNTIME = edgewasm.Runtime()


def _load(path: Path, store: Path) -> edgewasm.Guest:
    return RUNTIME.load(path, timeout=120, memory_limit="1GiB", models=store)


def inference(store: Path, x: np.ndarray, rounds: int) -> dict[str, Any]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(store / FP32 / "model.onnx"), so, providers=["CPUExecutionProvider"])
    nchw = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
    guests = {name: _load(WASM / module, store) for name, (module, _) in INFER.items()}
    times: dict[str, list[float]] = {"ort": [], **{n: [] for n in INFER}}

    def ort_run() -> None:
        t0 = time.perf_counter()
        sess.run(None, {"input": nchw})
        times["ort"].append((time.perf_counter() - t0) * 1e3)

    def guest_run(name: str) -> None:
        reply = guests[name].infer({"tensor": x, "model_id": INFER[name][1]})
        times[name].append(float(reply["stages_ms"]["inference"]))

    ref = sess.run(None, {"input": nchw})[0][0]
    agreement = {}
    for name, (_, mid) in INFER.items():
        got = np.asarray(guests[name].infer({"tensor": x, "model_id": mid, "return_logits": True})["logits"])
        agreement[name] = {
            "max_abs_vs_ort_fp32": float(np.abs(got - ref).max()),
            "top1": int(got.argmax()),
            "ort_fp32_top1": int(ref.argmax()),
        }
    steps = [ort_run, *[lambda n=n: guest_run(n) for n in INFER]]
    for step in steps:  # warm up
        step()
    for t in times.values():
        t.clear()
    for i in range(rounds):
        for j in range(len(steps)):
            steps[(i + j) % len(steps)]()
    for g in guests.values():
        g.close()
    o = times["ort"]
    out: dict[str, Any] = {"rounds": rounds, "ort_ms": statistics.median(o), "ort_min_ms": min(o)}
    out["logits"] = agreement
    for name in INFER:
        t = times[name]
        out[name] = {
            "ms": statistics.median(t),
            "min_ms": min(t),
            "ratio": statistics.median(a / b for a, b in zip(t, o, strict=True)),
            "ratio_of_minima": min(t) / min(o),
        }
    return out


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def load(store: Path, x: np.ndarray, rounds: int, bundles: dict[str, tuple[Path, str]]) -> dict[str, Any]:
    cases = {f"{name} (store image)": (WASM / m, mid) for name, (m, mid) in INFER.items()} | bundles
    for path, _ in cases.values():
        _load(path, store).close()  # the disk cache is warm from here on
    res: dict[str, dict[str, list[float]]] = {
        k: {"instance": [], "load": [], "first_ms": [], "second_ms": [], "first_faults": []} for k in cases
    }
    for _ in range(rounds):
        for name, (path, mid) in cases.items():
            r = res[name]
            RUNTIME.modules.clear()
            t0 = time.perf_counter()
            g = _load(path, store)
            t1 = time.perf_counter()
            reply = g.infer({"tensor": x, "model_id": mid})
            r["load"].append((t1 - t0) * 1e3 + float(reply["stages_ms"]["load"]))
            box: dict[str, Any] = {}

            def fresh(g: edgewasm.Guest = g, mid: str = mid, box: dict[str, Any] = box) -> None:
                t = time.perf_counter()
                g._instance()  # this thread's new instance (InstancePre, pooling allocator)
                box["inst"] = (time.perf_counter() - t) * 1e3
                a = _faults()
                box["first"] = g.infer({"tensor": x, "model_id": mid})
                box["faults"] = _faults() - a
                box["second"] = g.infer({"tensor": x, "model_id": mid})

            th = threading.Thread(target=fresh)
            th.start()
            th.join()
            r["instance"].append(box["inst"] + float(box["first"]["stages_ms"]["load"]))
            r["first_ms"].append(float(box["first"]["stages_ms"]["inference"]))
            r["second_ms"].append(float(box["second"]["stages_ms"]["inference"]))
            r["first_faults"].append(float(box["faults"]))
            g.close()
    return {k: {m: statistics.median(v) for m, v in r.items()} for k, r in res.items()}


def main() -> None:
    import skimage.data

    from edgewasm.models import _bundle, _pure
    from edgewasm.models._preprocess import preprocess_pixels
    from edgewasm.models._store import default_store

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rounds", type=int, nargs="?", default=30)
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=RESULTS, help="where to write the results")
    args = ap.parse_args()
    store = args.store or default_store()
    load_at_start = os.getloadavg()[0]
    x = preprocess_pixels(skimage.data.chelsea()).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="edgewasm-bundles-") as tmp:
        bundles = {}
        for name, module, mid in [
            ("int8-relaxed (bundled)", "classifier_relaxed.wasm", INT8),
            ("int8-simd128 (bundled)", "classifier.wasm", INT8),
            ("fp32 (bundled)", "classifier.wasm", FP32),
        ]:
            out = Path(tmp) / f"{name.split()[0]}.wasm"
            _bundle.write(WASM / module, _pure.image_of(mid, store), mid, out)
            bundles[name] = (out, mid)
        inf = inference(store, x, args.rounds)
        print(
            f"inference, {inf['rounds']} interleaved rounds, ONNX Runtime FP32 1 thread: "
            f"median {inf['ort_ms']:.2f} ms (min {inf['ort_min_ms']:.2f})"
        )
        for name in INFER:
            r = inf[name]
            print(
                f"  {name:14s} median {r['ms']:7.2f} ms  min {r['min_ms']:7.2f}  "
                f"x ORT {r['ratio']:.2f} (minima {r['ratio_of_minima']:.2f})"
            )
        ld = load(store, x, max(3, args.rounds // 5), bundles)
        print(
            "load (medians, ms): fresh instance until weights ready | fresh edgewasm.load + weights | "
            "first / second inference of a fresh instance | minor page faults during the first"
        )
        for name, r in ld.items():
            print(
                f"  {name:28s} {r['instance']:7.2f} | {r['load']:7.2f} | {r['first_ms']:7.2f} / "
                f"{r['second_ms']:7.2f} | {r['first_faults']:7.0f}"
            )
    result = {
        "command": "python bench/pure_paired.py" + (f" {args.rounds}" if args.rounds != 30 else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_at_start": load_at_start},
        "modules": {m: _sha256(WASM / m) for m in sorted({m for m, _ in INFER.values()})},
        "inference": inf,
        "load": ld,
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    main()
