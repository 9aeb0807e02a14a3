"""ONNX pieces every scoring model shares: the input transform and the final model assembly.

A Forewarn scoring graph takes raw features (n, F) as `features`, takes the log of the always-positive ones
(powers, RMS, frequencies), robust-scales them, runs a model-specific part on the scaled values, and
outputs `score` (n,) and `feature_error` (n, F), each feature's share of the score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "LOG_FLOOR",
    "ONNX_OPSET",
    "SCALED",
    "apply_logs",
    "assemble_scoring_model",
    "const",
    "feature_error_nodes",
    "fit_logs",
    "input_transform",
]

ONNX_OPSET = 17
LOG_FLOOR = 1e-30  # log(max(x + offset, floor)) stays finite whatever comes in
SCALED = "scaled"  # name of the transformed, robust-scaled features inside the graph


def fit_logs(x: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Which columns are always positive in training (compared as logs), and their log offsets (medians)."""
    log_mask: npt.NDArray[np.bool_] = np.asarray((x > 0.0).all(axis=0))
    log_offset: npt.NDArray[np.float64] = np.where(log_mask, np.median(x, axis=0), 0.0)
    return log_mask, log_offset


def apply_logs(
    x: npt.NDArray[np.float64], log_mask: npt.NDArray[np.bool_], log_offset: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """The numpy twin of the graph's log step: log(max(x + offset, floor)) where masked, x elsewhere."""
    logged = np.log(np.maximum(x + log_offset, LOG_FLOOR))
    result: npt.NDArray[np.float64] = np.where(log_mask, logged, x)
    return result


def const(name: str, values: npt.ArrayLike, dtype: type = np.float32) -> onnx.TensorProto:
    """A named constant tensor."""
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name=name)


def input_transform(
    input_name: str,
    *,
    log_offset: npt.ArrayLike,
    log_mask: npt.ArrayLike,
    center: npt.ArrayLike,
    scale: npt.ArrayLike,
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes and constants turning raw features into `SCALED`: log where masked, minus centre, over scale."""
    width = int(np.asarray(center).shape[0])
    node = helper.make_node
    nodes = [
        node("Add", [input_name, "log_offset"], ["offset"]),
        node("Max", ["offset", "log_floor"], ["floored"]),
        node("Log", ["floored"], ["logged"]),
        node("Where", ["log_mask", "logged", input_name], ["transformed"]),
        node("Sub", ["transformed", "center"], ["centred"]),
        node("Mul", ["centred", "inv_scale"], [SCALED]),
    ]
    constants = [
        const("log_offset", log_offset),
        const("log_floor", np.full(width, LOG_FLOOR)),
        const("log_mask", log_mask, np.bool_),
        const("center", center),
        const("inv_scale", 1.0 / np.asarray(scale, dtype=np.float64)),
    ]
    return nodes, constants


def feature_error_nodes(reconstructed: str, weight: str, total: str) -> list[onnx.NodeProto]:
    """Nodes from a reconstruction of `SCALED` to `feature_error` (each feature's weighted squared residual,
    (n, F): the contributions the edge reports) and its row sum `total` (reads the constant `sum_axes`)."""
    node = helper.make_node
    return [
        node("Sub", [SCALED, reconstructed], ["residual"]),
        node("Mul", ["residual", "residual"], ["squared_residual"]),
        node("Mul", ["squared_residual", weight], ["feature_error"]),
        node("ReduceSum", ["feature_error", "sum_axes"], [total], keepdims=0),
    ]


def assemble_scoring_model(
    *,
    name: str,
    doc: str,
    input_name: str,
    output_name: str,
    n_features: int,
    nodes: Sequence[onnx.NodeProto],
    initializers: Sequence[onnx.TensorProto],
    properties: Mapping[str, str] | None = None,
) -> bytes:
    """A checked, serialized model with the standard input and `score`/`feature_error` outputs."""
    graph = helper.make_graph(
        list(nodes),
        name,
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, n_features])],
        [
            helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [None]),
            helper.make_tensor_value_info("feature_error", TensorProto.FLOAT, [None, n_features]),
        ],
        initializer=list(initializers),
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="forewarn", doc_string=doc
    )
    model.ir_version = 8
    if properties:
        helper.set_model_props(model, dict(properties))
    onnx.checker.check_model(model, full_check=True)
    serialized: bytes = model.SerializeToString()
    return serialized
