"""A generated block in a doc: the lines between a begin and an end marker, rewritten by the script that measures
them (bench/reporting's `catalogue.ELSEWHERE` copies the same block into docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path


def write_block(doc: Path, begin: str, end: str, block: str) -> None:
    """Replace what lies between `begin` and `end` (markers included) in `doc` with `block`; refuse a doc without
    the markers rather than guess where the figures belong."""
    text = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    if begin not in text or end not in text:
        raise SystemExit(f"{doc} has no generated block ({begin} ... {end}): add the two marker lines where it goes")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(head + block + tail, encoding="utf-8")
