"""Anomaly models for the edge: training on healthy features, ONNX conversion, int8 quantization, manifest.

`build_anomaly_model` is the entry point; `synthetic_features` makes seeded healthy or faulty feature rows
for tests and benchmarks.
"""

from cloud_service.modeling.detector import PcaReconstructionDetector, to_onnx
from cloud_service.modeling.quantize import Quantization, quantize_int8
from cloud_service.modeling.synthetic import SPECTRAL_SPEC, synthetic_features, synthetic_vibration
from cloud_service.modeling.training import (
    MODEL_TYPE,
    ModelArtifact,
    build_anomaly_model,
    decision_agreement,
    onnx_scores,
    save_artifact,
)

__all__ = [
    "MODEL_TYPE",
    "SPECTRAL_SPEC",
    "ModelArtifact",
    "PcaReconstructionDetector",
    "Quantization",
    "build_anomaly_model",
    "decision_agreement",
    "onnx_scores",
    "quantize_int8",
    "save_artifact",
    "synthetic_features",
    "synthetic_vibration",
    "to_onnx",
]
