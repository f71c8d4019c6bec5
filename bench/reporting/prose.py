"""The report's prose, kept in prose.md (text is edited as text, not as string literals in code)."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from string import Template

_BLOCK = re.compile(r"^<!-- ([a-z0-9-]+) -->$", re.MULTILINE)


@functools.cache
def _blocks() -> dict[str, str]:
    text = (Path(__file__).parent / "prose.md").read_text(encoding="utf-8")
    parts = _BLOCK.split(text)
    # parts: [preamble, name, body, name, body, ...]; the preamble is the file's own comment
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


def prose(name: str, **values: object) -> list[str]:
    """The block's paragraphs, each on one line, with `$name`s filled in; a missing block or value raises."""
    body = Template(_blocks()[name]).substitute({k: str(v) for k, v in values.items()})
    paragraphs = [" ".join(line.strip() for line in p.splitlines()) for p in re.split(r"\n\s*\n", body)]
    out: list[str] = []
    for p in paragraphs:
        out += [p, ""]
    return out[:-1]
