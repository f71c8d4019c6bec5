"""The baseline: the same ABI round trip written with wasmtime-py's public API, as a user would write it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import wasmtime


class PublicApiGuest:
    def __init__(self, path: Path) -> None:
        engine = wasmtime.Engine()
        module = wasmtime.Module.from_file(engine, str(path))
        self.store = wasmtime.Store(engine)
        self.store.set_wasi(wasmtime.WasiConfig())
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        exports = linker.instantiate(self.store, module).exports(self.store)
        memory, alloc, free, infer = (exports[k] for k in ("memory", "edge_alloc", "edge_free", "infer"))
        assert isinstance(memory, wasmtime.Memory)
        assert isinstance(alloc, wasmtime.Func) and isinstance(free, wasmtime.Func) and isinstance(infer, wasmtime.Func)
        self.memory, self.alloc, self.free, self.infer_fn = memory, alloc, free, infer

    def infer_bytes(self, data: bytes) -> bytearray:
        """Write, call, read: the round trip of docs/abi.md through `Memory.write`, `Func.__call__`, `Memory.read`."""
        st = self.store
        ptr = self.alloc(st, len(data))
        self.memory.write(st, data, ptr)
        result = self.infer_fn(st, ptr, len(data)) & 0xFFFFFFFFFFFFFFFF
        out_ptr, out_len = result >> 32, result & 0xFFFFFFFF
        out = self.memory.read(st, out_ptr, out_ptr + out_len)
        self.free(st, out_ptr, out_len)
        self.free(st, ptr, len(data))
        return out

    def infer(self, request: Any) -> Any:
        return msgpack.unpackb(self.infer_bytes(msgpack.packb(request)))
