"""A cargo runner for wasm32-wasi test binaries (`make guest-test-wasm`): wasmtime with relaxed SIMD on, /tmp
preopened, the environment passed through. Test binaries carry no edgewasm.needs section, so `edgewasm run`
would not enable relaxed SIMD for them (and would take their `--test-threads` for its own options).

    CARGO_TARGET_WASM32_WASI_RUNNER="python guest/wasi_test_runner.py" cargo test --target wasm32-wasi ...
"""

from __future__ import annotations

import os
import sys

import wasmtime


def main() -> int:
    cfg = wasmtime.Config()
    cfg.wasm_relaxed_simd = True
    engine = wasmtime.Engine(cfg)
    module = wasmtime.Module.from_file(engine, sys.argv[1])
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = sys.argv[1:]
    wasi.env = [(k, v) for k, v in os.environ.items()] + [("TMPDIR", "/tmp")]
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    wasi.preopen_dir("/tmp", "/tmp")
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    instance = linker.instantiate(store, module)
    try:
        instance.exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
