"""EfficientNet-Lite0's structure, and the BatchNorm folding that turns the state dict into plain convs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import ModelStoreError

BN_EPS = 1e-3
NUM_CLASSES = 1000
INPUT_SIZE = 224
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Block:
    """One MBConv block: expand 1x1 (if expand > 1), depthwise kxk with stride, project 1x1."""

    index: int
    kernel: int
    stride: int
    expand: int
    cin: int
    cout: int

    @property
    def cmid(self) -> int:
        return self.cin * self.expand

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.cin == self.cout


def _stages() -> list[Block]:
    # (repeats, kernel, stride, expand, cin, cout) from the tensorflow/tpu lite builder, stem 32 / head 1280
    table = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
             (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]  # fmt: skip
    blocks: list[Block] = []
    for repeats, kernel, stride, expand, cin, cout in table:
        for r in range(repeats):
            blocks.append(Block(len(blocks), kernel, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout))
    return blocks


BLOCKS: tuple[Block, ...] = tuple(_stages())


def same_pads(in_size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow SAME: (out_size, pad_before, pad_after); the extra row/column goes after (bottom/right)."""
    out = -(-in_size // stride)
    total = max((out - 1) * stride + kernel - in_size, 0)
    return out, total // 2, total - total // 2


def _fold(sd: dict[str, npt.NDArray[Any]], conv: str, bn: str) -> tuple[F32, F32]:
    """Conv weight (torch layout, out-channel first) and bias with the BatchNorm after it folded in."""
    try:
        w = sd[f"{conv}.weight"].astype(np.float64)
        gamma = sd[f"{bn}.weight"].astype(np.float64)
        beta = sd[f"{bn}.bias"].astype(np.float64)
        mean = sd[f"{bn}.running_mean"].astype(np.float64)
        var = sd[f"{bn}.running_var"].astype(np.float64)
    except KeyError as exc:
        raise ModelStoreError(f"state dict lacks {exc.args[0]}: not an EfficientNet-Lite0 checkpoint") from exc
    scale = gamma / np.sqrt(var + BN_EPS)
    wf = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    bf = beta - mean * scale
    return wf.astype(np.float32), bf.astype(np.float32)


def fold_state_dict(sd: dict[str, npt.NDArray[Any]]) -> dict[str, F32]:
    """Folded weights in torch layout (conv [out, in/groups, kh, kw]) under EWT names; checks every shape."""
    out: dict[str, F32] = {}
    out["stem.w"], out["stem.b"] = _fold(sd, "_conv_stem", "_bn0")
    _expect(out["stem.w"], (STEM_CHANNELS, 3, 3, 3), "stem.w")
    for b in BLOCKS:
        p = f"_blocks.{b.index}"
        q = f"blocks.{b.index}"
        if b.expand != 1:
            out[f"{q}.expand.w"], out[f"{q}.expand.b"] = _fold(sd, f"{p}._expand_conv", f"{p}._bn0")
            _expect(out[f"{q}.expand.w"], (b.cmid, b.cin, 1, 1), f"{q}.expand.w")
        elif f"{p}._expand_conv.weight" in sd:
            raise ModelStoreError(f"block {b.index} has an expand conv the architecture does not expect")
        out[f"{q}.dw.w"], out[f"{q}.dw.b"] = _fold(sd, f"{p}._depthwise_conv", f"{p}._bn1")
        _expect(out[f"{q}.dw.w"], (b.cmid, 1, b.kernel, b.kernel), f"{q}.dw.w")
        out[f"{q}.project.w"], out[f"{q}.project.b"] = _fold(sd, f"{p}._project_conv", f"{p}._bn2")
        _expect(out[f"{q}.project.w"], (b.cout, b.cmid, 1, 1), f"{q}.project.w")
    out["head.w"], out["head.b"] = _fold(sd, "_conv_head", "_bn1")
    _expect(out["head.w"], (HEAD_CHANNELS, BLOCKS[-1].cout, 1, 1), "head.w")
    out["fc.w"] = np.asarray(sd["_fc.weight"], dtype=np.float32)
    out["fc.b"] = np.asarray(sd["_fc.bias"], dtype=np.float32)
    _expect(out["fc.w"], (NUM_CLASSES, HEAD_CHANNELS), "fc.w")
    return out


def _expect(arr: npt.NDArray[Any], shape: tuple[int, ...], name: str) -> None:
    if arr.shape != shape:
        raise ModelStoreError(f"{name} has shape {arr.shape}, expected {shape}: not an EfficientNet-Lite0 checkpoint")


def nhwc_tensor(name: str, w: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """One torch-layout tensor in its EWT layout (see docs/models.md), contiguous, dtype kept."""
    if name == "stem.w":
        t = w.transpose(2, 3, 1, 0)  # [kh, kw, cin, cout]
    elif name.endswith(("expand.w", "project.w")) or name == "head.w":
        t = w[:, :, 0, 0].T  # [cin, cout]
    elif name.endswith("dw.w"):
        t = w[:, 0].transpose(1, 2, 0)  # [k, k, c]
    elif name == "fc.w":
        t = w.T  # [1280, 1000]
    else:
        t = w
    return np.ascontiguousarray(t)


def to_nhwc_layout(folded: dict[str, F32]) -> dict[str, F32]:
    """Torch-layout folded weights -> the EWT layouts (see docs/models.md), contiguous float32."""
    return {name: np.ascontiguousarray(nhwc_tensor(name, w), dtype=np.float32) for name, w in folded.items()}
