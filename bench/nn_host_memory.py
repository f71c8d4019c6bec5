"""Host memory an adversarial WASI-NN guest makes the host spend, with the guest itself held to --memory-limit.

The guest (wasm/nn_script.wat under `edgewasm.load(..., memory_limit=...)`) loads one self-contained ONNX model from
its memory as many times as the host lets it (y = W + x, W a float32 initializer of --model-mib), makes contexts,
computes, and so leaves the host holding sessions and outputs. Each run is a fresh process; the figure is that
process's peak RSS (ru_maxrss) minus its RSS before the guest ran.

    python bench/nn_host_memory.py [--graphs 64] [--contexts 4] [--model-mib 16] [--memory-limit 64MiB]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, resource, sys
sys.path.insert(0, {tests!r})
import numpy as np
from onnx import TensorProto, helper
import edgewasm
from _nn_script import COMPUTE, F32, GUEST, INIT, LOAD, ONNX, SET_INPUT, Script

graphs, contexts, mib, limit = {graphs}, {contexts}, {mib}, {limit!r}
n = mib * 2**18
w = helper.make_tensor("W", TensorProto.FLOAT, [n], np.ones(n, np.float32).tobytes(), raw=True)
g = helper.make_graph([helper.make_node("Add", ["W", "x"], ["y"])], "g",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])], [w])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]); m.ir_version = 8
blob = m.SerializeToString()
s = Script()
arr, count = s.builders([blob])
x = s.tensor([1], F32, np.ones(1, np.float32).tobytes())
out = s.space(4)
for gi in range(graphs):
    s.call(LOAD, arr, count, ONNX, 0, out)
ctx = 0
for gi in range(graphs):
    for _ in range(contexts):
        s.call(INIT, gi, out)
        s.call(SET_INPUT, ctx, 0, x)
        s.call(COMPUTE, ctx)
        ctx += 1
guest = edgewasm.load(GUEST, memory_limit=limit, cache=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
results, _ = s.decode(guest.run(s.encode()).stdout)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
loads = results[:graphs]
computes = results[graphs + 2 :: 3]
refusal = next((r for r in results if r), 0)
print(json.dumps({{"loads_ok": loads.count(0), "computes_ok": computes.count(0), "first_refusal": refusal,
                  "rss_growth_mib": round((peak - before) / 1024, 1), "model_mib": mib}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graphs", type=int, default=64)
    ap.add_argument("--contexts", type=int, default=4, help="contexts made (and computed) per graph")
    ap.add_argument("--model-mib", type=int, default=16)
    ap.add_argument("--memory-limit", default="64MiB")
    a = ap.parse_args()
    code = _CHILD.format(
        tests=str(ROOT / "tests"), graphs=a.graphs, contexts=a.contexts, mib=a.model_mib, limit=a.memory_limit
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(proc.stderr)
    print(json.dumps({"graphs_tried": a.graphs, "contexts_per_graph": a.contexts, **json.loads(proc.stdout)}))


if __name__ == "__main__":
    main()
