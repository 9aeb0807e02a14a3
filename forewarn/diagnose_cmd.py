"""`forewarn diagnose --csv FILE --asset-config FILE`: the probable failure mode of a recording, offline.

Prints the mode most windows name, its evidence (frequencies and amplitudes against the noise floor and
the baseline), the running speed and the ISO 20816-3 zone, and writes the spectrum and envelope spectrum
with the defect frequencies marked to a PNG (`--png`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _report(result: Any) -> dict[str, Any]:
    representative = result.representative
    diagnosis = representative.diagnosis if representative is not None else None
    return {
        "asset_id": result.asset_id,
        "mode": result.mode,
        "mode_windows": result.mode_windows,
        "windows": len(result.windows),
        "mode_counts": result.mode_counts,
        "confidence": round(diagnosis.confidence, 3) if diagnosis else 0.0,
        "evidence": [e.describe() for e in diagnosis.evidence] if diagnosis else [],
        "shaft_hz": round(diagnosis.shaft_hz, 3) if diagnosis and diagnosis.shaft_hz else None,
        "velocity_rms_mm_s": (
            round(diagnosis.velocity_rms_mm_s, 3) if diagnosis and diagnosis.velocity_rms_mm_s else None
        ),
        "iso_zone": diagnosis.iso_zone if diagnosis else None,
        "sample_rate_hz": result.sample_rate_hz,
        "window_len": result.window_len,
        "baseline": result.baseline_source,
        "baseline_windows": result.baseline_windows,
        "bad_rows": result.bad_rows,
    }


def _diagnose(args: argparse.Namespace) -> int:
    from edge_agent.offline_diagnosis import diagnose_recording  # noqa: PLC0415 - keep `forewarn --help` fast
    from forewarn.diagnosis_plot import write_evidence_plot  # noqa: PLC0415
    from shared.asset_config import AssetDiagnosisConfig, load_asset_config  # noqa: PLC0415

    config = load_asset_config(args.asset_config) if args.asset_config else AssetDiagnosisConfig()
    result = diagnose_recording(
        args.csv,
        config,
        baseline_csv=args.baseline_csv,
        learn_first_s=args.learn_first,
        asset_id=args.asset,
        window_len=args.window_len,
    )
    report = _report(result)
    if args.png is not None and result.representative is not None:
        window = result.representative
        write_evidence_plot(args.png, window.measurements, window.diagnosis, title=result.asset_id)
        report["png"] = str(args.png)
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"forewarn diagnose: {report['asset_id']}: {report['mode']} in {report['mode_windows']} of "
        f"{report['windows']} windows ({report['window_len']} samples at {report['sample_rate_hz']:g} Hz; "
        f"baseline: {report['baseline']}, {report['baseline_windows']} windows)"
    )
    print(f"  windows per mode: {report['mode_counts']}")
    if report["shaft_hz"] is not None:
        print(f"  shaft speed {report['shaft_hz']} Hz ({60 * report['shaft_hz']:.0f} rpm)")
    if report["velocity_rms_mm_s"] is not None:
        print(
            f"  velocity RMS {report['velocity_rms_mm_s']} mm/s: ISO 20816-3 zone {report['iso_zone']} "
            f"(group {config.machine_group}, {config.foundation})"
        )
    for line in report["evidence"]:
        print(f"  evidence: {line}")
    if "png" in report:
        print(f"  wrote {report['png']}")
    return 0


def register(subparsers: Any) -> None:
    """Add `diagnose` to the command line."""
    parser = subparsers.add_parser(
        "diagnose",
        help="Diagnose a recording: the probable failure mode with its evidence, and a spectrum plot.",
        description=(
            "Diagnose a samples CSV (the format `forewarn edge score` reads) against the asset's "
            "configuration: bearing defects, imbalance, misalignment, looseness, cavitation, overheating, "
            "sensor faults; `unknown` when the evidence points nowhere."
        ),
    )
    parser.add_argument(
        "--csv", type=Path, required=True, help="The recording (file or raw_*.csv directory)."
    )
    parser.add_argument(
        "--asset-config", type=Path, default=None, help="The asset's diagnosis TOML (see examples/)."
    )
    parser.add_argument(
        "--asset", default=None, help="Which asset of the CSV (default: the config's or the first)."
    )
    learn = parser.add_mutually_exclusive_group()
    learn.add_argument("--baseline-csv", type=Path, default=None, help="A healthy recording of the asset.")
    learn.add_argument(
        "--learn-first",
        type=float,
        default=None,
        metavar="S",
        help="Learn the baseline from the first S seconds.",
    )
    parser.add_argument(
        "--window-len", type=int, default=None, help="Samples per window (default: about 1 s, a power of 2)."
    )
    parser.add_argument("--png", type=Path, default=None, help="Write the evidence plot to this PNG.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.set_defaults(handler=_diagnose)
