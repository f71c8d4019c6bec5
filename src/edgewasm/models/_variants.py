"""The quantized variants of a model: one store entry each, named ``<base>-<precision>``.

A variant is a model id like any other (``edgewasm models install efficientnet-lite0-int8``,
``--nn-preload efficientnet-lite0-int8``, ``"model_id": "efficientnet-lite0-int8"``); its entry holds the ONNX
Runtime model, the OpenVINO IR, the labels and ``weights.ewt`` (the variant's weights in the store's own format;
its header's ``meta version`` is the ``model_version`` the classifier guests answer). How it is made:
``_variant_store`` (docs/quantization.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._convert import MODEL_ID, MODEL_VERSION

PRECISIONS = ("fp16", "int8")

#: How each precision's files are made, numbered; the manifest records it and ``install`` rebuilds an entry
#: made by an older recipe. int8 recipe 2: pair-bounded 8-bit matrix-product weights (was 7-bit), sequential
#: bias correction of the ONNX Runtime model and of the pure guest's own scheme, the OpenVINO IR converted from
#: the ONNX Runtime model (was NNCF's quantization). Recipe 3: recipe 2 with every layer's weights rounded
#: adaptively (``_adaround``) before the bias correction instead of to the nearest step.
#: The int8 recipe each weight rounding makes (``install_variant(rounding=...)``; "nearest" rebuilds recipe 2
#: for comparisons and for the pure guest's kernel test).
INT8_ROUNDINGS: dict[str, int] = {"adaptive": 3, "nearest": 2}
RECIPES: dict[str, int] = {"fp16": 1, "int8": INT8_ROUNDINGS["adaptive"]}


@dataclass(frozen=True)
class Variant:
    id: str
    base: str
    precision: str  # one of PRECISIONS
    version: str  # the base's version and the precision, e.g. "1-int8"


def variant_id(base: str, precision: str) -> str:
    return f"{base}-{precision}"


VARIANTS: dict[str, Variant] = {
    variant_id(MODEL_ID, p): Variant(variant_id(MODEL_ID, p), MODEL_ID, p, f"{MODEL_VERSION}-{p}") for p in PRECISIONS
}
VARIANT_IDS: tuple[str, ...] = tuple(VARIANTS)
