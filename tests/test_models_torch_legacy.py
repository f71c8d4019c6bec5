"""The torch-free reader of the legacy .pth checkpoint."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edgewasm.models import ModelStoreError
from edgewasm.models._convert import locate_weights
from edgewasm.models._torch_legacy import MAGIC_NUMBER, PROTOCOL_VERSION, load_state_dict

pytest_plugins = ["_model_fixtures"]


def test_reads_every_entry(state_dict: dict[str, npt.NDArray[Any]]) -> None:
    assert len(state_dict) == 296
    floats = [k for k, v in state_dict.items() if v.dtype == np.float32]
    longs = [k for k, v in state_dict.items() if v.dtype == np.int64]
    assert len(floats) == 247
    assert len(longs) == 49
    assert all(k.endswith("num_batches_tracked") and state_dict[k].shape == () for k in longs)
    trainable = sum(v.size for k, v in state_dict.items() if v.dtype == np.float32 and "running_" not in k)
    assert trainable == 4_652_008
    assert state_dict["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state_dict["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state_dict["_fc.weight"].shape == (1000, 1280)
    assert all(np.isfinite(v).all() for v in state_dict.values())
    assert (state_dict["_bn1.running_var"] > 0).all()


def test_source_file_hash_matches_its_name() -> None:
    path, source = locate_weights()
    assert path.name == "efficientnet-lite0-57934424.pth"
    assert source.sha256.startswith("57934424")


def _raw() -> bytes:
    return locate_weights()[0].read_bytes()


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(ModelStoreError, match="unexpected bytes after the last storage"):
        load_state_dict(_raw() + b"\0")


def test_truncated_file_is_refused() -> None:
    with pytest.raises(ModelStoreError, match="truncated"):
        load_state_dict(_raw()[:-100])


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_foreign_globals_are_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    header = b"".join(pickle.dumps(x, protocol=2) for x in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}))
    evil = header + pickle.dumps({"w": _Evil(marker)}, protocol=2) + pickle.dumps([], protocol=2)
    with pytest.raises(ModelStoreError, match=r"refusing to load (posix|os|nt)\.mkdir"):
        load_state_dict(evil)
    assert not marker.exists()


def test_zip_format_gets_a_clear_error() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"")
    with pytest.raises(ModelStoreError, match="zip format"):
        load_state_dict(buf.getvalue())


def test_not_a_torch_file() -> None:
    with pytest.raises(ModelStoreError, match="not a legacy torch file"):
        load_state_dict(pickle.dumps(123, protocol=2))
