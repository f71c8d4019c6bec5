"""Where edgewasm keeps things on the host, each overridable by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

CACHE_ENV = "EDGEWASM_CACHE_DIR"
MODELS_ENV = "EDGEWASM_MODELS"
KEY_ENV = "EDGEWASM_KEY_FILE"


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("edgewasm")) / "artifacts"


def models_dir() -> Path:
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("edgewasm")) / "models"


def key_file() -> Path:
    """The per-user secret that authenticates cached artifacts: outside every cache directory, by design."""
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("edgewasm")) / "artifact.key"
