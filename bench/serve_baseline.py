"""The baselines of the serving benchmarks, on the same ASGI stack as `edgewasm serve` (Starlette on uvicorn):

    python bench/serve_baseline.py MODEL_DIR [--port 8001]

- `POST /echo`: answers the body it got, no WebAssembly: the framework's floor.
- `POST /classify`: what a user would write instead of a sandbox: an endpoint that, on Starlette's thread pool,
  decodes the posted JPEG with PIL, preprocesses with numpy and runs ONNX Runtime, one
  session shared by the threads (`bench/ort_classify.py`'s pipeline: intra-op 1 thread, like edgewasm's backend).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ort_classify


def make_app(model_dir: Path) -> Starlette:
    session, labels = ort_classify.load(model_dir)

    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/octet-stream")

    async def classify(request: Request) -> Response:
        body = await request.body()
        from starlette.concurrency import run_in_threadpool

        def work() -> dict[str, object]:
            image = ort_classify.decode(body)
            return ort_classify.postprocess(ort_classify.infer(session, ort_classify.preprocess(image)), labels)

        return JSONResponse(await run_in_threadpool(work))

    return Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/classify", classify, methods=["POST"])])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets TCP_NODELAY
    sock.bind(("127.0.0.1", args.port))
    print(json.dumps({"url": f"http://127.0.0.1:{sock.getsockname()[1]}"}), file=sys.stderr, flush=True)
    config = uvicorn.Config(make_app(args.model_dir), access_log=False, log_level="warning", server_header=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
