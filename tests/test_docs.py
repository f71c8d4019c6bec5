"""Every command and snippet in README.md and docs/*.md runs as written.

Each fenced block declares its language. `sh`/`bash`/`console` blocks run in bash in a temporary directory where
the repository's `wasm/`, `examples/`, `tests/` and `bench/` are reachable (a `console` block runs its `$ ` lines),
`python`
blocks run with exec (`>>>` ones as doctests), `wat` blocks must load as guests. The model store is the session's
test store.
A block that cannot run in a test (root and apt, a benchmark run, an install) carries a visible marker in the doc
source on the line before it, `<!-- doc-test: skip (why) -->`, which this test honours and counts.
"""

from __future__ import annotations

import dataclasses
import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"sh", "bash", "shell", "console"}
RUNNABLE = SHELL | {"python", "wat"}
#: Languages that are shown, not run: pseudo-code and file layouts, data, and code built elsewhere (guest/ builds
#: and tests the Rust; test_guest_build.py runs that).
SHOWN = {"text", "json", "jsonc", "toml", "rust"}
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
#: Blocks that talk to a running `edgewasm serve` at its default address: tests/test_serve_docs.py starts one (as
#: the docs do) and runs them against it.
SERVICE = "127.0.0.1:8000"
SKIP = re.compile(r"^\s*<!--\s*doc-test:\s*skip\s*\((?P<why>.+)\)\s*-->\s*$")


@dataclasses.dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    code: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, indent, lang = i, len(m.group(1)), m.group(2)
        i += 1
        body = []
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i][indent:])
            i += 1
        prev = lines[start - 1] if start else ""
        skip = SKIP.match(prev)
        out.append(Block(str(path.relative_to(ROOT)), start + 1, lang, "\n".join(body) + "\n", skip and skip["why"]))
        i += 1
    return out


ALL = [b for doc in DOCS for b in blocks(doc)]
RUN = [b for b in ALL if b.lang in RUNNABLE]


def test_every_block_says_what_it_is() -> None:
    unknown = [f"{b.where} ```{b.lang}" for b in ALL if b.lang not in RUNNABLE | SHOWN]
    assert not unknown, f"blocks without a known language (add one: sh, python, wat, text, ...): {unknown}"
    misplaced = [b.where for b in ALL if b.skip and b.lang not in RUNNABLE]
    assert not misplaced, f"skip markers on blocks that are not run anyway: {misplaced}"


#: How many blocks may carry a skip marker: a ratchet, so that skipping one more is a decision made here.
#: +1 quantization.md's pip install of the quantize extra; +2 classifier.md's INT8 bundle (test_pure_int8.py runs it)
#: and its measurement commands; +7 docs/deploy.md's blocks that need root, podman and its image, a cluster or Ray.
SKIPS_ALLOWED = 22


def test_skip_markers_are_counted() -> None:
    """The few blocks that cannot run here, listed (`pytest -s` shows them)."""
    skipped = [f"{b.where}: {b.skip}" for b in RUN if b.skip]
    print(f"{len(RUN) - len(skipped)} of {len(RUN)} runnable blocks run; skipped:", *skipped, sep="\n  ")
    assert len(skipped) <= SKIPS_ALLOWED, skipped


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("docs")
    for name in ("wasm", "examples", "tests", "bench", "deploy"):
        (work / name).symlink_to(ROOT / name, target_is_directory=True)
    return work


@pytest.fixture(scope="module")
def doc_env(workdir: Path) -> dict[str, str]:
    from _model_fixtures import _installed_store

    env = dict(os.environ)
    env["EDGEWASM_MODELS"] = str(_installed_store())
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # edgewasm, python: this venv's
    return env


def _console_commands(code: str) -> str:
    """The `$ ` lines of a console block (with their `\\` continuations); the rest is output."""
    commands, lines, it = [], code.splitlines(), 0
    while it < len(lines):
        line = lines[it]
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\") and it + 1 < len(lines):
                it += 1
                command = command[:-1] + " " + lines[it].strip()
            commands.append(command)
        it += 1
    return "\n".join(commands) + "\n"


@pytest.mark.parametrize("block", RUN, ids=[b.where for b in RUN])
def test_block_runs_as_written(
    block: Block, workdir: Path, doc_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if block.skip:
        pytest.skip(f"marked in {block.doc}: {block.skip}")
    if SERVICE in block.code:
        pytest.skip("addresses a running service: tests/test_serve_docs.py starts `edgewasm serve` and runs it")
    if block.doc == "docs/quantization.md":  # its blocks use the FP16 and INT8 variants: a store that has them
        from _model_fixtures import variants_store

        doc_env = dict(doc_env, EDGEWASM_MODELS=str(variants_store()))
    if block.lang in SHELL:
        script = _console_commands(block.code) if block.lang == "console" else block.code
        proc = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=workdir,
            env=doc_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, f"{block.where} exited {proc.returncode}:\n{script}\n{proc.stderr[-2000:]}"
    elif block.lang == "python":
        monkeypatch.chdir(workdir)
        for key in ("EDGEWASM_MODELS", "PATH"):
            monkeypatch.setenv(key, doc_env[key])
        if block.code.lstrip().startswith(">>>"):
            test = doctest.DocTestParser().get_doctest(block.code, {}, block.where, block.doc, block.line)
            runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
            runner.run(test)
            assert runner.failures == 0, f"{block.where}: the doctest's output differs (see above)"
        else:
            exec(compile(block.code, block.where, "exec"), {"__name__": "__doc_snippet__"})
    else:  # wat: a guest as shown must load (and so validate, and pass the ABI check)
        import edgewasm

        edgewasm.load(block.code.encode()).close()
