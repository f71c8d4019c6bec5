"""Fuzz the running server against its own OpenAPI description with schemathesis (bounded): no 5xx, every status,
content type, header and body as documented. The models here are well-behaved; the misbehaving guests' 500/504
are tested in test_serve_http.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests._model_fixtures import model_store  # noqa: F401
from tests._serve_support import WASM, Server

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

# A JSON Schema cannot say that `data` must have prod(shape) elements or that a body must be a decodable image, so
# schema-valid requests may rightly get 400/422: every other check (no 5xx, documented statuses, content types,
# headers and response bodies) runs.
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

EXAMPLES = 20


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory, model_store: Path) -> Iterator[Server]:  # noqa: F811
    args = ["--task", "classifier=image-classification", "--timeout", "20",
            f"classifier={WASM / 'classifier.wasm'}", f"echo={WASM / 'echo.wat'}"]  # fmt: skip
    srv = Server(args, cache_dir=tmp_path_factory.mktemp("c"), env={"EDGEWASM_MODELS": str(model_store)})
    srv.start()
    yield srv
    assert srv.stop() == 0
    assert srv.tracebacks() == [], "\n".join(srv.lines)


def test_the_api_keeps_its_description(fuzz_server: Server) -> None:
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 14  # every route but the page
    for operation in operations:
        path = operation.path

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case: Any) -> None:
            # Aim most cases at models that exist, so they reach the guests, not only the 404 path.
            model = (case.path_parameters or {}).get("model")
            if model is not None and model not in ("echo", "classifier"):
                case.path_parameters["model"] = "classifier" if "classify" in path else "echo"  # noqa: B023 (runs in this iteration)
            case.call_and_validate(base_url=fuzz_server.url, excluded_checks=[positive_data_acceptance])

        check()
