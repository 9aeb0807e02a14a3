"""int8 quantization of float ONNX models with onnxruntime's tools.

`quantize_static_qdq` quantizes the MatMuls (weights per tensor, activations calibrated on healthy rows)
in QDQ format; the element-wise scoring tail (residuals, squares, sums) stays float, and the residual is
taken from the float input, so saturating an out-of-range anomalous input moves its excess into the
residual instead of hiding it. Fixed scales also make each row's score independent of the rest of its
batch. `quantize_dynamic_int8` (activation scales computed per call over the whole batch, so one
anomalous row coarsens the others' scores) is kept for comparison in the benchmark.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

__all__ = ["Quantization", "quantize_dynamic_int8", "quantize_int8", "quantize_static_qdq"]

logger = logging.getLogger(__name__)

Quantization = Literal["int8-static-qdq", "int8-dynamic"]
_CALIBRATION_BATCH = 64


class _DropPreprocessHint(logging.Filter):
    """Drops onnxruntime's "consider pre-processing" hint: it needs sympy and does nothing for these
    graphs, which are fully shaped and contain nothing to fuse before quantization."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _quiet_hint() -> Iterator[None]:
    """onnxruntime logs its hint on the root logger; filter it there while quantizing."""
    root = logging.getLogger()
    hint_filter = _DropPreprocessHint()
    root.addFilter(hint_filter)
    try:
        yield
    finally:
        root.removeFilter(hint_filter)


class _Rows(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime is untyped
    """Feeds calibration rows to the quantizer in small batches."""

    def __init__(self, input_name: str, rows: npt.NDArray[np.float32]) -> None:
        self._batches: Iterator[npt.NDArray[np.float32]] = iter(
            [rows[i : i + _CALIBRATION_BATCH] for i in range(0, len(rows), _CALIBRATION_BATCH)]
        )
        self._input_name = input_name

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input_name: np.ascontiguousarray(batch, dtype=np.float32)}


def quantize_static_qdq(
    model: bytes, calibration: npt.NDArray[np.float32], *, input_name: str = "features"
) -> bytes:
    """Static int8 QDQ quantization of the MatMuls, activation ranges from `calibration` rows (min/max).

    Activations are uint8 and weights int8, the combination onnxruntime's CPU kernels are fastest at.
    """
    with tempfile.TemporaryDirectory(prefix="forewarn-quant-") as tmp:
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(model)
        with _quiet_hint():
            quantize_static(
                source,
                target,
                _Rows(input_name, calibration),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul"],
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=False,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        return target.read_bytes()


def quantize_dynamic_int8(model: bytes) -> bytes:
    """Dynamic int8 quantization of the MatMul weights (activations quantized at run time)."""
    with tempfile.TemporaryDirectory(prefix="forewarn-quant-") as tmp:
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(model)
        with _quiet_hint():
            quantize_dynamic(
                source,
                target,
                op_types_to_quantize=["MatMul"],
                weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        return target.read_bytes()


def quantize_int8(
    model: bytes,
    calibration: npt.NDArray[np.float32],
    *,
    method: Quantization = "int8-static-qdq",
    input_name: str = "features",
) -> bytes:
    """int8 model by `method`: static QDQ with `calibration` rows, or dynamic."""
    if method == "int8-static-qdq":
        return quantize_static_qdq(model, calibration, input_name=input_name)
    return quantize_dynamic_int8(model)
