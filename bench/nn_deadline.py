"""How closely a timeout holds when the guest is inside a WASI-NN `compute`, per backend.

A command guest (wasm/nn_script.wat) runs load_by_name / init / set_input / compute on a preloaded model that
computes for seconds (tests/_nn_slow.py, a chain of MatMuls); the preload is built before the timed runs, so the
deadline passes inside compute. Prints, per backend: the untimed compute, and for each timeout the wall time until
GuestTimeout (median of --rounds runs). ONNX Runtime is terminated between kernels and OpenVINO's request is
cancelled; LiteRT cannot be cancelled, so its figure is the whole invoke.

    python bench/nn_deadline.py [--nodes 150] [--timeouts 0.2 1.0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

import edgewasm  # noqa: E402
from _nn_script import COMPUTE, F32, GUEST, INIT, LOAD_BY_NAME, SET_INPUT, Script  # noqa: E402
from _nn_slow import COLS, INPUT_DIMS, ROWS, slow_onnx, slow_openvino, slow_tflite  # noqa: E402
from edgewasm.nn import NnLimits, WasiNN  # noqa: E402


def _script(dims: tuple[int, ...]) -> bytes:
    s = Script()
    s.call(LOAD_BY_NAME, s.put(b"default"), 7, s.space(4))
    x = s.tensor(dims, F32, np.ones(dims, np.float32).tobytes())
    s.call(INIT, 0, s.space(4))
    s.call(SET_INPUT, 0, 0, x)
    s.call(COMPUTE, 0)
    return s.encode()


def _timed(spec: str, stdin: bytes, timeout: float | None) -> tuple[float, str]:
    guest = edgewasm.load(GUEST, timeout=timeout, nn_preload=[spec], nn_limits=NnLimits(model_bytes=4 << 30))
    start = time.perf_counter()
    try:
        guest.run(stdin)
        outcome = "ok"
    except edgewasm.GuestTimeout as e:
        outcome = "GuestTimeout in " + str(e).rsplit(" ", 1)[-1]
    elapsed = time.perf_counter() - start
    guest.close()
    return elapsed, outcome


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=150)
    ap.add_argument("--timeouts", type=float, nargs="+", default=[0.2, 1.0])
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edgewasm-deadline-"))
    (tmp / "slow.onnx").write_bytes(slow_onnx(a.nodes))
    (tmp / "slow.tflite").write_bytes(slow_tflite(a.nodes))
    xml, weights = slow_openvino(a.nodes, tmp)
    cases = {
        "onnxruntime": (f"default:ONNX:CPU:{tmp / 'slow.onnx'}", INPUT_DIMS),
        "openvino": (f"default:OpenVINO:CPU:{xml}:{weights}", INPUT_DIMS),
        "litert": (f"default:TFLite:CPU:{tmp / 'slow.tflite'}", (ROWS, COLS)),
    }
    print("| backend | compute, no timeout | " + " | ".join(f"timeout {t:g} s" for t in a.timeouts) + " |")
    print("|---|---|" + "---|" * len(a.timeouts))
    for name, (spec, dims) in cases.items():
        nn = WasiNN([spec])
        nn._graphs.get_or_load(nn.preloads[0], nn._backend, nn._options)  # the default runtime's cache
        stdin = _script(dims)
        untimed = statistics.median(_timed(spec, stdin, None)[0] for _ in range(a.rounds))
        cells = []
        for t in a.timeouts:
            runs = [_timed(spec, stdin, t) for _ in range(a.rounds)]
            cells.append(f"{statistics.median(r[0] for r in runs):.2f} s ({runs[0][1]})")
        print(f"| {name} | {untimed:.2f} s | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
