"""What a worker thread does for one request: map it to the guest's request, call the guest, map the answer back.

Each job runs on the model's worker (its instance's thread), so the event loop only moves bytes. Timings of the
three parts are returned for the metrics, with the guest's own `stages_ms` when it reports them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from .. import _abi, _codec
from .._errors import AbiError
from .._guest import Guest
from .errors import BadRequest, UnsupportedMediaType
from .mapping import from_jsonable, guest_request, jsonable, output_tensors
from .tensors import read_tensors, split_body, write_body


@dataclasses.dataclass
class Result:
    body: bytes
    media_type: str
    header_length: int | None = None
    input_s: float = 0.0
    infer_s: float = 0.0
    output_s: float = 0.0
    stages_ms: dict[str, float] = dataclasses.field(default_factory=dict)


class _Depth:
    """Deeply nested JSON or guest answers exhaust Python's recursion: a 400 for a request, an ABI error for a guest."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if kind is RecursionError:
            raise _too_deep(self.what) from None


def _too_deep(what: str) -> Exception:
    if what == "request":
        return BadRequest("the request is nested too deeply", hint="flatten it")
    return AbiError("the guest's answer is nested too deeply to map to JSON or tensors")


def _stages(reply: Any) -> dict[str, float]:
    stages = reply.get("stages_ms") if isinstance(reply, dict) else None
    if not isinstance(stages, dict):
        return {}
    return {str(k): float(v) for k, v in stages.items() if isinstance(v, (int, float)) and v >= 0}


def _wanted_outputs(header: dict[str, Any]) -> tuple[list[str] | None, set[str], bool]:
    """The requested output names (None: all), the ones wanted binary, and whether all are wanted binary."""
    params = header.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest("request parameters must be an object")
    all_binary = params.get("binary_data_output") is True
    items = header.get("outputs")
    if items is None:
        return None, set(), all_binary
    if not isinstance(items, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in items):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    names = [o["name"] for o in items]
    binary = set()
    for o in items:
        p = o.get("parameters") or {}
        if not isinstance(p, dict):
            raise BadRequest(f"output {o['name']!r}: parameters must be an object")
        if p.get("binary_data", all_binary) is True:
            binary.add(o["name"])
    return names, binary, False


def infer_oip(
    guest: Guest, body: bytes, header_length: str | None, model: str, version: str, request_id: str
) -> Result:
    """One OIP `/infer` request (JSON tensors, or the binary tensor data extension)."""
    t0 = time.perf_counter()
    try:  # (not `with _Depth(...)`: this is every OIP request's path, and a try costs nothing)
        header, binary = split_body(body, header_length)
        inputs = read_tensors(header.get("inputs"), binary)
        params = header.get("parameters") or {}
        wanted, binary_names, all_binary = _wanted_outputs(header)
        request = guest_request(inputs, params)
    except RecursionError:
        raise _too_deep("request") from None
    rid = header.get("id")
    t1 = time.perf_counter()
    reply = guest.infer(request)
    t2 = time.perf_counter()
    head: dict[str, Any] = {"model_name": model, "model_version": version}
    head["id"] = rid if isinstance(rid, str) else request_id
    try:
        tensors = output_tensors(reply, wanted)
        if all_binary:
            binary_names = {t.name for t in tensors}
        out, length = write_body(head, "outputs", tensors, binary_names)
    except RecursionError:
        raise _too_deep("answer") from None
    t3 = time.perf_counter()
    media = "application/json" if length is None else "application/octet-stream"
    return Result(out, media, length, t1 - t0, t2 - t1, t3 - t2, _stages(reply))


#: `json.dumps(value, ensure_ascii=False)` with its encoder made once, not per call.
_TEXT = json.JSONEncoder(ensure_ascii=False, allow_nan=True).encode

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")


def call_media_type(header: str | None) -> str:
    """The `/call` body's media type (JSON when not given); UnsupportedMediaType unless JSON or msgpack."""
    ctype = ("application/json" if header is None else header).split(";")[0].strip().lower()
    if ctype not in ("application/json", "text/json", *MSGPACK_TYPES):
        raise UnsupportedMediaType(f"cannot read a {ctype} body", hint="send application/json or application/msgpack")
    return ctype


def call_native(guest: Guest, body: bytes, content_type: str, accept: str) -> Result:
    """The guest's own request as JSON or msgpack (the article's InferenceRequest works as is)."""
    t0 = time.perf_counter()
    binary = content_type in MSGPACK_TYPES
    if binary:
        try:
            _codec.decode(body)  # only checked: the guest gets these very bytes, a valid msgpack message
        except Exception as e:  # msgpack raises several unrelated types for garbage
            raise BadRequest(f"request body is not valid msgpack: {e}") from None
    else:
        try:
            with _Depth("request"):
                request = from_jsonable(json.loads(body))
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(
                f"request body is not valid JSON: {e}", hint="send JSON, or msgpack with its type"
            ) from None
    t1 = time.perf_counter()
    if binary:
        raw = guest.infer_bytes(body)
        reply = _abi.decode_reply(memoryview(raw))  # the guest's error envelope raises here, as in Guest.infer
    else:
        reply = guest.infer(request)
    t2 = time.perf_counter()
    with _Depth("answer"):
        if any(t in accept for t in MSGPACK_TYPES):
            # msgpack in and out: the guest's answer as it wrote it (decoded above, so it is valid msgpack)
            out = (
                raw
                if binary
                else b"".join(bytes(s) if isinstance(s, bytes) else s.tobytes() for s in _codec.encode(reply))
            )
            media = "application/msgpack"
        else:
            out = _TEXT(jsonable(reply)).encode()
            media = "application/json"
    return Result(out, media, None, t1 - t0, t2 - t1, time.perf_counter() - t2, _stages(reply))


def classify_image(guest: Guest, image: bytes, options: dict[str, Any]) -> Result:
    """An image file for a classifier: `{"image": bytes, **options}`, the answer as JSON."""
    t0 = time.perf_counter()
    reply = guest.infer({"image": image, **options})
    t1 = time.perf_counter()
    with _Depth("answer"):
        out = _TEXT(jsonable(reply)).encode()
    return Result(out, "application/json", None, 0.0, t1 - t0, time.perf_counter() - t1, _stages(reply))
