"""The evidence plot of `forewarn diagnose`: spectrum and envelope spectrum with the defect frequencies.

matplotlib draws it (Agg backend, no display): plotly's static export needs kaleido, which downloads a
browser, and the tool must work offline on a gateway or an engineer's laptop.
"""

from __future__ import annotations

from pathlib import Path

from shared.diagnosis import Diagnosis, Measurements

__all__ = ["write_evidence_plot"]

_SHAFT_MARKS = ("1x", "2x", "3x", "0.5x", "1.5x")
_DPI = 110


def _bearing_of(diagnosis: Diagnosis, measurements: Measurements) -> str:
    """The bearing the diagnosis names (`outer_race:drive-end`), else the first one measured."""
    if ":" in diagnosis.mode:
        return diagnosis.mode.split(":", maxsplit=1)[1]
    names = [n.split(":")[1] for n in measurements.targets_hz if n.startswith("env:")]
    return names[0] if names else ""


def write_evidence_plot(path: Path, measurements: Measurements, diagnosis: Diagnosis, *, title: str) -> None:
    """Write a PNG: the spectrum (shaft harmonics marked) over the envelope spectrum (defect frequencies).

    Found evidence is drawn solid and labelled; expected frequencies without evidence are dotted.
    """
    import matplotlib  # noqa: PLC0415 - only this command needs matplotlib; keep `forewarn --help` fast

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    found = {e.name for e in diagnosis.evidence if e.is_found}
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), constrained_layout=True)
    if measurements.spectrum is not None:
        spectrum = measurements.spectrum
        top.semilogy(spectrum.freqs_hz, spectrum.amplitudes, linewidth=0.7, color="tab:blue")
        top.set_xlim(0, min(spectrum.freqs_hz[-1], 12.0 * (measurements.shaft_hz or 100.0)))
        for name in _SHAFT_MARKS:
            freq = measurements.targets_hz.get(name)
            if freq is not None:
                top.axvline(
                    freq,
                    color="tab:red" if name in found else "grey",
                    linestyle="-" if name in found else ":",
                )
                top.annotate(name, (freq, 1.0), xycoords=("data", "axes fraction"), fontsize=8, va="top")
    speed = f"shaft {measurements.shaft_hz:.2f} Hz" if measurements.shaft_hz else "shaft speed unknown"
    top.set_title(f"Spectrum ({speed})")
    top.set_xlabel("Hz")
    top.set_ylabel("amplitude")
    if measurements.envelope is not None:
        envelope = measurements.envelope
        bottom.semilogy(envelope.freqs_hz, envelope.amplitudes, linewidth=0.7, color="tab:green")
        highest = max(
            f for n, f in measurements.targets_hz.items() if n.startswith("env:")
        )  # set with the envelope
        bottom.set_xlim(0, min(envelope.freqs_hz[-1], 1.2 * highest))
        bearing = _bearing_of(diagnosis, measurements)
        for name, freq in measurements.targets_hz.items():
            if not name.startswith(f"env:{bearing}:"):
                continue
            label = name.rsplit(":", maxsplit=1)[-1]
            is_found = label in found
            bottom.axvline(freq, color="tab:red" if is_found else "grey", linestyle="-" if is_found else ":")
            if is_found or label.endswith("x1"):
                bottom.annotate(
                    label, (freq, 0.98), xycoords=("data", "axes fraction"), fontsize=7, rotation=90, va="top"
                )
        band = measurements.envelope_band_hz
        band_text = f"band-pass {band[0]:.0f}-{band[1]:.0f} Hz" if band else ""
        bottom.set_title(f"Envelope spectrum, bearing {bearing} ({band_text})")
    else:
        bottom.set_title("Envelope spectrum: no bearing configured")
    bottom.set_xlabel("Hz")
    bottom.set_ylabel("envelope amplitude")
    zone = f", ISO zone {diagnosis.iso_zone}" if diagnosis.iso_zone else ""
    figure.suptitle(f"{title}: {diagnosis.mode} (confidence {diagnosis.confidence:.2f}{zone})")
    figure.savefig(path, dpi=_DPI)
    plt.close(figure)
