"""Build the ONNX model (opset 17) from the folded torch-layout weights with onnx's helper API.

TensorFlow SAME padding is asymmetric, so every Conv carries explicit ``pads`` computed for the 224x224 input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ._arch import BLOCKS, INPUT_SIZE, NUM_CLASSES, same_pads

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def build_onnx(folded: Mapping[str, npt.NDArray[np.float32]], model_id: str, version: str) -> Any:
    """An ``onnx.ModelProto``: input "input" f32 [1,3,224,224] NCHW, output "logits" f32 [1,1000]."""
    from onnx import TensorProto, checker, helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = [
        numpy_helper.from_array(np.array(0.0, np.float32), "relu6_min"),
        numpy_helper.from_array(np.array(6.0, np.float32), "relu6_max"),
    ]
    size = INPUT_SIZE

    def conv(x: str, name: str, kernel: int, stride: int, group: int = 1, act: bool = True) -> str:
        nonlocal size
        out, before, after = same_pads(size, kernel, stride)
        size = out
        w, b = f"{name}.w", f"{name}.b"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(folded[w], np.float32), w))
        inits.append(numpy_helper.from_array(np.ascontiguousarray(folded[b], np.float32), b))
        y = f"{name}.conv"
        attrs: dict[str, Any] = {
            "kernel_shape": [kernel, kernel],
            "strides": [stride, stride],
            "dilations": [1, 1],
            "group": group,
        }
        pads = [
            before,
            before,
            after,
            after,
        ]  # [top, left, bottom, right]: TF SAME puts the extra pixel after
        nodes.append(helper.make_node("Conv", [x, w, b], [y], name=f"{name}/Conv", pads=pads, **attrs))
        if not act:
            return y
        nodes.append(helper.make_node("Clip", [y, "relu6_min", "relu6_max"], [f"{name}.relu6"], name=f"{name}/Relu6"))
        return f"{name}.relu6"

    h = conv(INPUT_NAME, "stem", 3, 2)
    for blk in BLOCKS:
        p = f"blocks.{blk.index}"
        y = h
        if blk.expand != 1:
            y = conv(y, f"{p}.expand", 1, 1)
        y = conv(y, f"{p}.dw", blk.kernel, blk.stride, group=blk.cmid)
        y = conv(y, f"{p}.project", 1, 1, act=False)
        if blk.residual:
            nodes.append(helper.make_node("Add", [h, y], [f"{p}.add"], name=f"{p}/Add"))
            y = f"{p}.add"
        h = y
    h = conv(h, "head", 1, 1)
    nodes.append(helper.make_node("GlobalAveragePool", [h], ["pool"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="flatten", axis=1))
    inits.append(numpy_helper.from_array(np.ascontiguousarray(folded["fc.w"], np.float32), "fc.w"))
    inits.append(numpy_helper.from_array(np.ascontiguousarray(folded["fc.b"], np.float32), "fc.b"))
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], [OUTPUT_NAME], name="fc", transB=1))

    graph = helper.make_graph(
        nodes,
        model_id,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, NUM_CLASSES])],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="edgewasm",
        producer_version=version,
    )
    model.ir_version = 8  # opset 17's IR; readable by every onnxruntime >= 1.13
    model.doc_string = f"{model_id} (EfficientNet-Lite0, BatchNorm folded, TF SAME padding as explicit pads)"
    checker.check_model(model)
    return model
