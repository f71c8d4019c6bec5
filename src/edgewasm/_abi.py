"""The guest ABI in one place: its version, its exports, the packing of `infer`'s result, the error envelope of a
response, and the verdict (what kind of guest a module is, and precisely what is wrong when it is neither).

See docs/abi.md. The checks run on the module's export types, before any instance exists. The request and response
encoding itself is `_codec`; the `edgewasm.needs` custom section is `_source`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import msgpack
import wasmtime

from . import _codec
from ._errors import AbiError, GuestError

#: The version a guest's `edge_abi_version()` must return (a guest without that export speaks this one).
ABI_VERSION = 1
GuestKind = Literal["reactor", "command"]

#: The largest response length `infer` may return; a longer one is a broken guest, not an answer.
MAX_RESPONSE = 1 << 30

_I32 = "i32"
_I64 = "i64"


@dataclasses.dataclass(frozen=True)
class Export:
    params: tuple[str, ...]
    results: tuple[str, ...]
    meaning: str  # how docs/abi.md and the error messages write it


#: Every function export the ABI knows, by name: the one table to edit for an ABI change.
EXPORTS: dict[str, Export] = {
    "infer": Export((_I32, _I32), (_I64,), "infer(ptr: i32, len: i32) -> i64 returning (out_ptr << 32) | out_len"),
    "edge_alloc": Export((_I32,), (_I32,), "edge_alloc(size: i32) -> i32"),
    "edge_free": Export((_I32, _I32), (), "edge_free(ptr: i32, size: i32)"),
    "edge_abi_version": Export((), (_I32,), "edge_abi_version() -> i32"),
    "_initialize": Export((), (), "_initialize()"),
    "_start": Export((), (), "_start()"),
}


def unpack_result(result: int) -> tuple[int, int]:
    """`infer`'s i64 result, as (out_ptr, out_len)."""
    result &= 0xFFFFFFFFFFFFFFFF
    return result >> 32, result & 0xFFFFFFFF


def decode_reply(view: memoryview) -> Any:
    """A guest's msgpack response: its value, or the `GuestError` of its error envelope (`{"error": {kind,
    message}}`, docs/abi.md)."""
    try:
        reply = _codec.decode(view)
    except (ValueError, msgpack.UnpackException) as e:
        raise AbiError(
            f"guest response cannot be decoded: {e}", hint="the guest must answer in msgpack (docs/abi.md)"
        ) from None
    if isinstance(reply, dict) and "error" in reply:
        err = reply["error"]
        if isinstance(err, dict):
            raise GuestError(str(err.get("kind", "error")), str(err.get("message", "")))
        raise GuestError("error", str(err))
    return reply


@dataclasses.dataclass(frozen=True)
class Verdict:
    kind: GuestKind
    imports_wasi_nn: bool

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        """A verdict recorded in an artifact's trailer; checking export types again costs more than loading."""
        kind = data.get("kind")
        if kind not in ("reactor", "command"):
            raise ValueError(f"bad guest kind {kind!r}")
        return cls(kind, bool(data["imports_wasi_nn"]))


def _signature(ty: wasmtime.FuncType) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(str(p) for p in ty.params), tuple(str(r) for r in ty.results)


def _fmt(sig: tuple[tuple[str, ...], tuple[str, ...]]) -> str:
    params, results = sig
    text = f"({', '.join(params)})"
    return text + (f" -> {', '.join(results)}" if results else "")


def describe_exports(module: wasmtime.Module) -> dict[str, str]:
    """Each export's name and type, as `inspect` shows them."""
    out: dict[str, str] = {}
    for exp in module.exports:
        ty = exp.type
        if isinstance(ty, wasmtime.FuncType):
            out[exp.name] = "func " + _fmt(_signature(ty))
        elif isinstance(ty, wasmtime.MemoryType):
            out[exp.name] = f"memory {ty.limits.min} pages" + (
                f" (max {ty.limits.max})" if ty.limits.max is not None else ""
            )
        else:
            out[exp.name] = type(ty).__name__.replace("Type", "").lower()
    return out


#: The import module of WASI-NN's functions (the host defines them when a guest imports any).
NN_MODULE = "wasi_ephemeral_nn"


def imports_wasi_nn(module: wasmtime.Module) -> bool:
    """True when a module imports anything from `wasi_ephemeral_nn` (so the host should `define` it)."""
    return any(imp.module == NN_MODULE for imp in module.imports)


def check(module: wasmtime.Module, name: str) -> Verdict:
    """Classify the module, or raise AbiError naming the first thing that is wrong."""
    funcs: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    memories: set[str] = set()
    for exp in module.exports:
        if isinstance(exp.type, wasmtime.FuncType):
            funcs[exp.name] = _signature(exp.type)
        elif isinstance(exp.type, wasmtime.MemoryType):
            memories.add(exp.name)
    imports_nn = imports_wasi_nn(module)

    for fname, sig in funcs.items():
        export = EXPORTS.get(fname)
        if export is not None and sig != (export.params, export.results):
            extra = ""
            if fname == "infer" and sig == ((_I32, _I32), (_I32,)):
                extra = " (an i32 result is a pointer without a length)"
            raise AbiError(
                f"{name}: export {fname} has type {_fmt(sig)}{extra}; ABI v{ABI_VERSION} needs {export.meaning}",
                hint="see docs/abi.md",
            )

    if "infer" in funcs:
        if "memory" not in memories:
            raise AbiError(
                f"{name}: exports infer but no memory named 'memory'",
                hint="export the linear memory as 'memory' (docs/abi.md)",
            )
        for required in ("edge_alloc", "edge_free"):
            if required not in funcs:
                raise AbiError(
                    f"{name}: exports infer but not {EXPORTS[required].meaning}; the host cannot pass a request "
                    "without the guest's allocator",
                    hint="export edge_alloc and edge_free (the Rust SDK in guest/sdk does)",
                )
        return Verdict("reactor", imports_nn)
    if "_start" in funcs:
        return Verdict("command", imports_nn)
    shown = ", ".join(sorted(funcs)) or "no functions"
    raise AbiError(
        f"{name}: undefined export infer (and no _start): the module exports {shown}",
        hint="export infer(ptr, len) -> i64 (docs/abi.md) or build a WASI command with _start",
    )
