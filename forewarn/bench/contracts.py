"""`forewarn bench contracts`: raw-batch decoding (binary vs JSON) and feature extraction speed."""

from __future__ import annotations

from typing import Any

import numpy as np

from forewarn.bench.timing import best_rate
from shared.features import DEFAULT_SPEC, vibration_features
from shared.raw_batch import (
    RawBatch,
    decode_raw_batch,
    decode_raw_batch_json,
    encode_raw_batch,
    encode_raw_batch_json,
)
from shared.timebase import now_ns

__all__ = ["run"]

BATCH_SAMPLES = 4096
FEATURE_BATCH_WINDOWS = 256


def _batch(rng: np.random.Generator) -> RawBatch:
    return RawBatch(
        asset_id="pump-001",
        sensor="vibration",
        seq=1,
        start_ns=now_ns(),
        sample_rate_hz=10_000.0,
        samples=rng.standard_normal(BATCH_SAMPLES).astype(np.float32),
    )


def run(*, quick: bool = False) -> dict[str, Any]:
    """Measure decode and feature rates on one core."""
    min_time_s = 0.05 if quick else 0.3
    repeats = 2 if quick else 5
    rng = np.random.default_rng(7)
    batch = _batch(rng)
    binary = encode_raw_batch(batch)
    text = encode_raw_batch_json(batch)

    def decode_binary() -> int:
        for _ in range(100):
            decode_raw_batch(binary)
        return 100 * BATCH_SAMPLES

    def decode_json() -> int:
        decode_raw_batch_json(text)
        return BATCH_SAMPLES

    windows = rng.standard_normal((FEATURE_BATCH_WINDOWS, DEFAULT_SPEC.window_len)).astype(np.float32)

    def features() -> int:
        vibration_features(windows, 10_000.0, DEFAULT_SPEC.n_bands)
        return FEATURE_BATCH_WINDOWS

    binary_rate = best_rate(decode_binary, repeats=repeats, min_time_s=min_time_s)
    json_rate = best_rate(decode_json, repeats=repeats, min_time_s=min_time_s)
    feature_rate = best_rate(features, repeats=repeats, min_time_s=min_time_s)
    return {
        "raw_batch_samples": BATCH_SAMPLES,
        "raw_batch_binary_bytes": len(binary),
        "raw_batch_json_bytes": len(text),
        "raw_batch_binary_decode_samples_per_s": round(binary_rate),
        "raw_batch_json_decode_samples_per_s": round(json_rate),
        "binary_to_json_decode_ratio": round(binary_rate / json_rate, 1),
        "features_windows_per_s": round(feature_rate),
        "features_samples_per_s": round(feature_rate * DEFAULT_SPEC.window_len),
        "feature_window_len": DEFAULT_SPEC.window_len,
        "feature_n_bands": DEFAULT_SPEC.n_bands,
    }
