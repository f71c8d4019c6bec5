"""What our source article claims ("Rust + WebAssembly Edge AI Inference: From 100ms to 10ms"), quoted as claims.

Nothing here was measured by us; the report prints these beside our own measurements, labelled as the article's.
"""

from __future__ import annotations

#: Stage -> (the article's label, ms before, ms after): load by AOT, preprocessing by SIMD, inference by WASI-NN,
#: postprocessing by zero-copy serialization.
STAGES: dict[str, tuple[str, float, float]] = {
    "load": ("model load (AOT)", 30.0, 2.0),
    "preprocess": ("preprocessing (SIMD)", 20.0, 5.0),
    "inference": ("inference (WASI-NN)", 40.0, 2.0),
    "postprocess": ("postprocessing (zero-copy)", 10.0, 1.0),
}

#: Its runtime comparison: cold start, inference latency, image size, and its star ratings (cross-platform,
#: isolation, as it gives them).
COMPARISON: dict[str, dict[str, str]] = {
    "Rust + WasmEdge AOT": {"cold start": "< 1 ms", "latency": "10 ms", "image size": "5 MB", "stars": "5/5, 5/5"},
    "Rust + Wasmtime": {"cold start": "3 ms", "latency": "15 ms", "image size": "8 MB", "stars": "5/5, 4/5"},
    "Python + ONNX Runtime": {"cold start": "500 ms", "latency": "40 ms", "image size": "500 MB", "stars": "3/5, 2/5"},
    "C++ + TensorRT": {"cold start": "200 ms", "latency": "8 ms", "image size": "200 MB", "stars": "2/5"},
    "Go + TensorFlow Lite": {"cold start": "100 ms", "latency": "25 ms", "image size": "50 MB", "stars": "4/5, 3/5"},
}

#: Its quantization table, relative to FP32: model size, accuracy loss, inference speed-up.
QUANTIZATION: dict[str, tuple[str, str, str]] = {
    "FP32": ("100%", "0%", "1x"),
    "FP16": ("50%", "< 0.1%", "1.5x"),
    "INT8": ("25%", "1–3%", "2–4x"),
    "INT4": ("12.5%", "3–8%", "3–6x"),
}
