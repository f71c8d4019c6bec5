"""Scripts for wasm/nn_script.wat (no tests here): a list of wasi_ephemeral_nn calls and the data they point at,
encoded as the guest's stdin, and its stdout decoded back into results and output bytes."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

WASM = Path(__file__).resolve().parent.parent / "wasm"
GUEST = WASM / "nn_script.wat"
BASE = 0x10000

LOAD, LOAD_BY_NAME, LOAD_BY_NAME_WITH_CONFIG, INIT, SET_INPUT, COMPUTE, GET_OUTPUT, UNLOAD, FINALIZE, GROW = range(10)
ONNX, OPENVINO, TFLITE = 1, 0, 4
F32, U8 = 1, 3


@dataclass
class Script:
    """Data placed in the guest's memory plus the calls to make. Addresses are absolute guest addresses."""

    data: bytearray = field(default_factory=lambda: bytearray(4))  # word 0: the call table's address
    calls: list[tuple[int, ...]] = field(default_factory=list)
    out: tuple[int, int] = (0, 0)

    def put(self, blob: bytes, align: int = 16) -> int:
        """Place bytes in guest memory; their address."""
        self.data += b"\0" * (-len(self.data) % align)
        at = BASE + len(self.data)
        self.data += blob
        return at

    def space(self, size: int) -> int:
        return self.put(b"\0" * size)

    def u32s(self, *values: int) -> int:
        return self.put(struct.pack(f"<{len(values)}I", *(v & 0xFFFFFFFF for v in values)), 4)

    def builders(self, blobs: Sequence[bytes]) -> tuple[int, int]:
        """A graph_builder_array for `load`: (address, count)."""
        pairs: list[int] = []
        for b in blobs:
            pairs += [self.put(b), len(b)]
        return self.u32s(*pairs), len(blobs)

    def tensor(self, dims: Sequence[int], ttype: int, data: bytes) -> int:
        d = self.u32s(*dims) if dims else self.u32s(0)
        p = self.put(data)
        return self.u32s(d, len(dims), ttype, p, len(data))

    def call(self, fn: int, *args: int) -> int:
        """Add a call; its index in the results."""
        self.calls.append((fn, *args, *([0] * (5 - len(args)))))
        return len(self.calls) - 1

    def output(self, ptr: int, size: int) -> None:
        self.out = (ptr, size)

    def encode(self) -> bytes:
        words = [len(self.calls)]
        for c in self.calls:
            words += [v & 0xFFFFFFFF for v in c]
        words += list(self.out)
        buf = bytearray(self.data)
        buf += b"\0" * (-len(buf) % 4)
        table = BASE + len(buf)
        buf += struct.pack(f"<{len(words)}I", *words)
        buf[0:4] = struct.pack("<I", table)
        return bytes(buf)

    def decode(self, stdout: bytes) -> tuple[list[int], bytes]:
        n = len(self.calls)
        assert len(stdout) == 4 * n + self.out[1], f"stdout is {len(stdout)} bytes"
        return list(struct.unpack(f"<{n}I", stdout[: 4 * n])), stdout[4 * n :]


def load_and_run(script: Script, blobs: Sequence[bytes], encoding: int, out_size: int) -> tuple[int, int]:
    """Calls: load(blobs), init, compute (a model with no inputs), get_output(0) into a buffer of out_size.
    Returns the buffer's and the bytes-written word's addresses."""
    arr, n = script.builders(blobs)
    graph, ctx, written = script.space(4), script.space(4), script.space(4)
    buf = script.space(out_size)
    script.call(LOAD, arr, n, encoding, 0, graph)
    script.call(INIT, 0, ctx)  # the first graph of a fresh instance is handle 0
    script.call(COMPUTE, 0)
    script.call(GET_OUTPUT, 0, 0, buf, out_size, written)
    script.output(buf, out_size)
    return buf, written
