"""The Extism peer: an echo plugin built here from WAT against Extism's kernel imports (`extism:host/env`), run
through Extism's Python SDK. No downloaded binaries: the module is assembled in the benchmark session.

The plugin copies its input to its output 8 bytes per kernel call (`input_load_u64` -> `store_u64`), the way
Extism's own PDKs move bytes; the kernel functions are wasm, so these are cheap wasm-to-wasm calls.
"""

from __future__ import annotations

from typing import Any

import msgpack
import wasmtime

ECHO_WAT = r"""
(module
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "input_load_u64" (func $input_load_u64 (param i64) (result i64)))
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (memory (export "memory") 1)
  (func (export "echo") (result i32)
    (local $n i64) (local $out i64) (local $i i64) (local $words i64)
    (local.set $n (call $input_length))
    (local.set $out (call $alloc (local.get $n)))
    (local.set $words (i64.and (local.get $n) (i64.const -8)))
    (block $w_done (loop $w
      (br_if $w_done (i64.ge_u (local.get $i) (local.get $words)))
      (call $store_u64 (i64.add (local.get $out) (local.get $i)) (call $input_load_u64 (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 8)))
      (br $w)))
    (block $b_done (loop $b
      (br_if $b_done (i64.ge_u (local.get $i) (local.get $n)))
      (call $store_u8 (i64.add (local.get $out) (local.get $i)) (call $input_load_u8 (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $b)))
    (call $output_set (local.get $out) (local.get $n))
    (i32.const 0)))
"""


def echo_wasm() -> bytes:
    return bytes(wasmtime.wat2wasm(ECHO_WAT))


class ExtismEcho:
    """The same msgpack round trip as the other echo guests, through `extism.Plugin.call`."""

    def __init__(self) -> None:
        import extism

        self.plugin = extism.Plugin(echo_wasm(), wasi=False)

    def infer_bytes(self, data: bytes) -> bytes:
        return bytes(self.plugin.call("echo", data))

    def infer(self, request: Any) -> Any:
        return msgpack.unpackb(self.plugin.call("echo", msgpack.packb(request)))
