"""Every curl, `edgewasm infer` and Python example that addresses the service in docs/serving.md and README.md runs
as written against `edgewasm serve` (the bundled default, as the docs start it), from the repository root.
tests/test_docs.py runs every other block and hands these over."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests._model_fixtures import model_store  # noqa: F401
from tests._serve_support import ROOT, Server

DOCS = (ROOT / "docs" / "serving.md", ROOT / "README.md")
ADDRESS = "127.0.0.1:8000"


def blocks(lang: str) -> list[str]:
    found = (re.findall(rf"```{lang}\n(.*?)```", doc.read_text(), re.S) for doc in DOCS)
    return [b for blocks in found for b in blocks if ADDRESS in b]


def commands(block: str) -> list[str]:
    out: list[str] = []
    for line in block.splitlines():
        if line.startswith(("curl ", "edgewasm infer ")):
            out.append(line)
        elif line.startswith(" ") and out:
            out[-1] += "\n" + line
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_store: Path) -> Iterator[Server]:  # noqa: F811
    srv = Server([], cache_dir=tmp_path_factory.mktemp("c"), env={"EDGEWASM_MODELS": str(model_store)})
    srv.start()
    yield srv
    assert srv.stop() == 0
    assert srv.tracebacks() == [], "\n".join(srv.lines[-80:])


def test_the_docs_have_examples() -> None:
    assert len([c for b in blocks("sh") for c in commands(b)]) >= 10 and len(blocks("python")) >= 2


def test_shell_examples_run(server: Server) -> None:
    address = server.url.removeprefix("http://")
    for command in (c for b in blocks("sh") for c in commands(b)):
        expected = re.search(r"#\s*(\d{3})\s*$", command)
        out = subprocess.run(["bash", "-c", command.replace(ADDRESS, address)], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        assert out.returncode == 0 and out.stdout.strip(), (command, out.stderr)
        if expected:
            assert out.stdout.splitlines()[0].split()[1] == expected.group(1), (command, out.stdout)
        else:
            assert '"error"' not in out.stdout, (command, out.stdout)


def test_python_examples_run(server: Server) -> None:
    pytest.importorskip("tritonclient.http")
    address = server.url.removeprefix("http://")
    for block in blocks("python"):
        out = subprocess.run([sys.executable, "-c", block.replace(ADDRESS, address)], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert out.returncode == 0 and "cat" in out.stdout, (block, out.stderr)
