"""`NnLimits`: what one guest instance may make the host hold for it through WASI-NN.

`memory_limit` bounds a guest's linear memory, not what its WASI-NN calls make the host allocate: a model loaded
from guest memory becomes a backend session several times its size, and every output waits in host memory until
the guest reads it. These budgets are per store (one guest instance, like `memory_limit`); models the host preloads
are shared and not charged. Past a budget the guest gets an errno and the host logs one debug line naming the
option that raises it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

MiB = 1 << 20

#: The names `--nn-limit NAME=VALUE` accepts, and the fields they set.
_OPTION_NAMES = {
    "graphs": "graphs",
    "contexts": "contexts",
    "model-bytes": "model_bytes",
    "tensor-bytes": "tensor_bytes",
}


@dataclasses.dataclass(frozen=True)
class NnLimits:
    """Host-side WASI-NN budgets of one guest instance (store).

    graphs: live graphs loaded from guest memory (a graph stays live while its handle or a context made from it
        does). contexts: live execution contexts. model_bytes: bytes of those graphs' models, as the guest sent
        them (the backend's session is typically 1-4x that), plus what each LiteRT context copies of them.
        tensor_bytes: tensor bytes the host holds for the guest: inputs copied at `set_input`
        (`copy_inputs=True`) and outputs kept for `get_output`.
    The defaults let a guest hold a few models like EfficientNet-Lite0 (18 MB); the host's WASI-NN memory for
    one instance then stays within a few hundred MiB (docs/wasi-nn.md has the measurement).
    """

    graphs: int = 4
    contexts: int = 16
    model_bytes: int = 64 * MiB
    tensor_bytes: int = 64 * MiB

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"NnLimits.{f.name} must be a non-negative int, got {value!r}")

    @classmethod
    def parse(cls, items: Iterable[str], base: NnLimits | None = None) -> NnLimits:
        """Limits from `NAME=VALUE` strings (the CLI's `--nn-limit`): graphs=8, model-bytes=512MiB, ..."""
        from .._errors import SandboxError
        from .._options import parse_size

        changes: dict[str, int] = {}
        for item in items:
            name, sep, value = item.partition("=")
            field = _OPTION_NAMES.get(name.strip().lower().replace("_", "-"))
            if not sep or field is None:
                raise ValueError(
                    f"bad --nn-limit {item!r}: expected NAME=VALUE, NAME one of {', '.join(_OPTION_NAMES)}"
                )
            try:
                changes[field] = (parse_size(value.strip()) or 0) if field.endswith("_bytes") else int(value)
            except (ValueError, SandboxError):
                want = "a size like 512MiB" if field.endswith("_bytes") else "a whole number"
                raise ValueError(f"bad --nn-limit {item!r}: the value must be {want}") from None
        try:
            return dataclasses.replace(base or cls(), **changes)
        except ValueError as exc:
            raise ValueError(f"bad --nn-limit: {exc}") from None


def raise_hint(field: str) -> str:
    """How to raise one budget, for the one-line messages a guest's refusal is logged with."""
    option = next(k for k, v in _OPTION_NAMES.items() if v == field)
    return f"raise it with NnLimits({field}=...) or `edgewasm run --nn-limit {option}=...`"
