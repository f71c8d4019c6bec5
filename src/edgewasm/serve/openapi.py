"""The OpenAPI 3.0 description of the service, served at /openapi.json (the tests fuzz the server against it)."""

from __future__ import annotations

import functools
from typing import Any

from .. import __version__
from .config import DATATYPES

_ERRORS = {
    "400": "The request does not follow the protocol, or the guest reported `bad_request`",
    "404": "No such model or version",
    "413": "The body is larger than the server's limit",
    "415": "A body type the route does not read",
    "422": "The guest reported an error about the request's content (`decode`, `not_found`, ...)",
    "500": "The guest trapped (its instance is replaced) or broke the ABI; `kind` and `trap_code` say how",
    "503": "The model's queue is full, the server is not ready, or a model could not be loaded (see Retry-After)",
    "504": "The request's deadline passed (queued too long, or the guest ran past its timeout)",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {c: _json(_ref("Error"), _ERRORS[c]) for c in codes}


_MODEL = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
_BINARY = {"type": "string", "format": "binary"}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "kind": {"type": "string"},
            "hint": {"type": "string"},
            "trap_code": {"type": "string"},
        },
    },
    "Parameters": {"type": "object", "additionalProperties": True},
    "Tensor": {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": list(DATATYPES)},
            "parameters": _ref("Parameters"),
            "data": {"description": "row-major elements (nested lists allowed in requests); absent for binary data"},
        },
    },
    "MetadataTensor": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": -1}},
        },
    },
    "InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": _ref("Parameters"),
            "inputs": {"type": "array", "items": _ref("Tensor")},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "parameters": _ref("Parameters")},
                },
            },
        },
    },
    "InferenceResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": _ref("Parameters"),
            "outputs": {"type": "array", "items": _ref("Tensor")},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("MetadataTensor")},
            "outputs": {"type": "array", "items": _ref("MetadataTensor")},
            "parameters": _ref("Parameters"),
        },
    },
    "ModelState": {
        "type": "object",
        "required": ["name", "version", "state"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "state": {"type": "string", "enum": ["READY", "UNAVAILABLE"]},
            "task": {"type": "string"},
            "description": {"type": "string"},
        },
    },
}


def _infer_op(versioned: bool) -> dict[str, Any]:
    return {
        "post": {
            "summary": "Inference (Open Inference Protocol)",
            "parameters": [_MODEL, _VERSION] if versioned else [_MODEL],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _ref("InferenceRequest")},
                    "application/octet-stream": {
                        "schema": _BINARY,
                        "description": "binary tensor data extension: the JSON header, then raw tensors; the "
                        "header's length in Inference-Header-Content-Length",
                    },
                },
            },
            "responses": {
                "200": {
                    "description": "The outputs (binary ones after the JSON header when asked for)",
                    "content": {
                        "application/json": {"schema": _ref("InferenceResponse")},
                        "application/octet-stream": {"schema": _BINARY},
                    },
                },
                **_errors("400", "404", "413", "422", "500", "503", "504"),
            },
        }
    }


def _metadata_op(versioned: bool) -> dict[str, Any]:
    return {
        "get": {
            "summary": "Model metadata",
            "parameters": [_MODEL, _VERSION] if versioned else [_MODEL],
            "responses": {"200": _json(_ref("ModelMetadata")), **_errors("404")},
        }
    }


def _model_ready_op(versioned: bool) -> dict[str, Any]:
    ready = {"type": "object", "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}}
    return {
        "get": {
            "summary": "Model readiness: 200 when loaded and the server is ready",
            "parameters": [_MODEL, _VERSION] if versioned else [_MODEL],
            "responses": {"200": _json(ready), "503": _json(ready, "Not loaded now"), **_errors("404")},
        }
    }


def _native_op() -> dict[str, Any]:
    any_json: dict[str, Any] = {}
    return {
        "post": {
            "summary": 'The guest\'s own request, JSON or msgpack (bytes in JSON as {"$base64": ...})',
            "parameters": [_MODEL],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": any_json}, "application/msgpack": {"schema": _BINARY}},
            },
            "responses": {
                "200": {
                    "description": "The guest's response, in msgpack when the Accept header asks for it",
                    "content": {"application/json": {"schema": any_json}, "application/msgpack": {"schema": _BINARY}},
                },
                **_errors("400", "404", "413", "415", "422", "500", "503", "504"),
            },
        }
    }


def _classify_op() -> dict[str, Any]:
    options = [
        {"name": "top_k", "in": "query", "required": False, "schema": {"type": "integer"}},
        {"name": "model_id", "in": "query", "required": False, "schema": {"type": "string"}},
    ]
    form = {
        "type": "object",
        "required": ["image"],
        "properties": {"image": _BINARY, "top_k": {"type": "integer"}},
    }
    return {
        "post": {
            "summary": "Classify an image file (raw body or multipart form) with an image-classification model",
            "parameters": [_MODEL, *options],
            "requestBody": {
                "required": True,
                "content": {
                    "image/jpeg": {"schema": _BINARY},
                    "image/png": {"schema": _BINARY},
                    "application/octet-stream": {"schema": _BINARY},
                    "multipart/form-data": {"schema": form},
                },
            },
            "responses": {
                "200": _json({"type": "object"}, "The classifier's response (label, top_k, stages_ms, ...)"),
                **_errors("400", "404", "413", "415", "422", "500", "503", "504"),
            },
        }
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    live = {"type": "object", "properties": {"live": {"type": "boolean"}}}
    ready = {"type": "object", "properties": {"ready": {"type": "boolean"}}}
    server = {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    }
    text = {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "edgewasm serve",
            "version": __version__,
            "description": "The Open Inference Protocol (KServe v2) over WebAssembly guests; see docs/serving.md",
        },
        "paths": {
            "/v2/health/live": {"get": {"summary": "Liveness", "responses": {"200": _json(live)}}},
            "/v2/health/ready": {
                "get": {
                    "summary": "Readiness: every module compiled and instantiated, not draining",
                    "responses": {"200": _json(ready), "503": _json(ready, "Not ready")},
                }
            },
            "/v2": {"get": {"summary": "Server metadata", "responses": {"200": _json(server)}}},
            "/v2/models/{model}": _metadata_op(False),
            "/v2/models/{model}/versions/{version}": _metadata_op(True),
            "/v2/models/{model}/ready": _model_ready_op(False),
            "/v2/models/{model}/versions/{version}/ready": _model_ready_op(True),
            "/v2/models/{model}/infer": _infer_op(False),
            "/v2/models/{model}/versions/{version}/infer": _infer_op(True),
            "/v2/repository/index": {
                "post": {
                    "summary": "The models and their state",
                    "responses": {"200": _json({"type": "array", "items": _ref("ModelState")})},
                }
            },
            "/models": {
                "get": {
                    "summary": "The models, for the page",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "models": {"type": "array", "items": _ref("ModelState")},
                                    "ready": {"type": "boolean"},
                                },
                            }
                        )
                    },
                }
            },
            "/models/{model}/call": _native_op(),
            "/models/{model}/classify": _classify_op(),
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": text}}},
        },
        "components": {"schemas": _SCHEMAS},
    }
