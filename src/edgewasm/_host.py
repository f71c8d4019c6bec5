"""What the host machine is, as far as compiled code cares.

wasmtime compiles for the CPU it runs on and accepts an artifact built with other CPU features without a word
(facts: `has_avx=false` loads silently), so the CPU's feature set is part of every artifact's identity.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys


def _cpu_flags() -> list[str]:
    """The feature flags the kernel reports, sorted; empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                # x86 names them "flags", arm64 "Features".
                if key.strip() in ("flags", "Features"):
                    return sorted(set(value.split()))
    except OSError:
        pass
    if sys.platform == "darwin":
        import subprocess

        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                capture_output=True,
                text=True,
                timeout=2,
                check=False,
            ).stdout
            return sorted(set(out.lower().split()))
        except OSError:
            return []
    return []


@functools.cache
def wasmtime_version() -> str:
    """The installed wasmtime package's version, read from its dist-info directory name.

    `importlib.metadata` would add its imports to every `edgewasm run`; this is a directory listing.
    """
    import wasmtime

    site = os.path.dirname(os.path.dirname(wasmtime.__file__))
    try:
        for entry in os.listdir(site):
            if entry.startswith("wasmtime-") and entry.endswith(".dist-info"):
                return entry[len("wasmtime-") : -len(".dist-info")]
    except OSError:
        pass
    import importlib.metadata

    return importlib.metadata.version("wasmtime")


@functools.cache
def target() -> str:
    """A target description in the spirit of a triple: architecture and OS."""
    return f"{platform.machine().lower()}-{sys.platform}"


@functools.cache
def cpu_features_digest() -> str:
    """A short digest of the CPU's features: equal digests mean the same instructions are available."""
    flags = " ".join(_cpu_flags()) or platform.processor() or "unknown"
    return hashlib.sha256(flags.encode()).hexdigest()[:16]


@functools.cache
def fingerprint() -> dict[str, str]:
    """Everything about the host that makes a compiled artifact valid or not."""
    return {
        "wasmtime": wasmtime_version(),
        "target": target(),
        "cpu": cpu_features_digest(),
    }
