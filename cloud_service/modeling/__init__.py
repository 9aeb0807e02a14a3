"""Anomaly models for the edge: training on healthy features, ONNX conversion, int8 quantization, manifest.

Modules: `detector` (the PCA reconstruction detector and its ONNX graph), `autoencoder` (the MLP
autoencoder detector and its ONNX graph), `graph` (the ONNX nodes both graphs share), `quantize` (int8
quantization), `training` (fitting either detector into a signed-ready package: ONNX, int8, manifest,
golden pairs), `synthetic` (seeded healthy or faulty feature rows for tests and benchmarks).

`build_anomaly_model` (PCA) and `build_autoencoder_model` (MLP autoencoder) are the entry points.
"""

from cloud_service.modeling.autoencoder import MlpAutoencoderDetector, mlp_to_onnx
from cloud_service.modeling.detector import PcaReconstructionDetector, to_onnx
from cloud_service.modeling.quantize import Quantization, quantize_int8
from cloud_service.modeling.synthetic import SPECTRAL_SPEC, synthetic_features, synthetic_vibration
from cloud_service.modeling.training import (
    AUTOENCODER_MAX_FIT_ROWS,
    AUTOENCODER_MODEL_TYPE,
    MODEL_TYPE,
    ModelArtifact,
    build_anomaly_model,
    build_autoencoder_model,
    decision_agreement,
    onnx_scores,
    save_artifact,
)

__all__ = [
    "AUTOENCODER_MAX_FIT_ROWS",
    "AUTOENCODER_MODEL_TYPE",
    "MODEL_TYPE",
    "SPECTRAL_SPEC",
    "MlpAutoencoderDetector",
    "ModelArtifact",
    "PcaReconstructionDetector",
    "Quantization",
    "build_anomaly_model",
    "build_autoencoder_model",
    "decision_agreement",
    "mlp_to_onnx",
    "onnx_scores",
    "quantize_int8",
    "save_artifact",
    "synthetic_features",
    "synthetic_vibration",
    "to_onnx",
]
