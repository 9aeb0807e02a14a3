"""The recorded-files connector against real files and the real broker, into the real edge agent."""

from __future__ import annotations

import csv
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io.wavfile
from nptdms import ChannelObject, TdmsWriter

from edge_agent.agent import EdgeAgent
from edge_agent.connectors.files import FilesConnector, ProgressRecord
from edge_agent.connectors.runtime import ConnectorRuntime
from edge_agent.connectors.settings import FilesConnectorSettings
from edge_agent.settings import AssetSettings, PipelineSettings, SensorSettings
from forewarn.localservices import MosquittoServer, wait_until
from shared.config import load_settings
from shared.features import SensorKind
from shared.timebase import NS_PER_S, iso_time, now_ns
from tests.connectors_support import (
    RawCollector,
    RecordingPipeline,
    broker_settings,
    recording_edge_agent,
    running_in_thread,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "connect-files.toml"
COUNTS_TO_G = 10.0 / 32768
WAV_RATE = 25_600
TDMS_RATE = 12_800.0


def _settings(workdir: Path, broker: MosquittoServer, **changes: Any) -> FilesConnectorSettings:
    overrides: dict[str, Any] = {
        "watch_dir": str(workdir / "inbox"),
        "done_dir": str(workdir / "done"),
        "quarantine_dir": str(workdir / "quarantine"),
        "state_file": str(workdir / "progress.json"),
        "settle_s": 0.0,
        "speed": 0.0,
        "poll_interval_s": 0.05,
        "mqtt": broker_settings(broker),
        "health": {"interval_s": 0.5},
        **changes,
    }
    settings = load_settings(FilesConnectorSettings, toml_path=EXAMPLE, environ={}, overrides=overrides)
    for folder in (settings.watch_dir, settings.done_dir, settings.quarantine_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return settings


def _write_wav(path: Path, frames: int, *, seed: int = 1) -> np.ndarray:
    counts = np.random.default_rng(seed).integers(-20_000, 20_000, size=(frames, 2)).astype(np.int16)
    scipy.io.wavfile.write(path, WAV_RATE, counts)
    return counts


def _write_tdms(path: Path, start: np.datetime64) -> tuple[np.ndarray, np.ndarray]:
    vibration = np.sin(np.arange(25_600) / 5.0)
    temperature = (np.arange(40) + 600).astype(np.int16)
    with TdmsWriter(path) as writer:
        for lo in (0, 12_800):  # two segments, as a DAQ appends them
            writer.write_segment(
                [
                    ChannelObject(
                        "Vibration",
                        "Motor DE",
                        vibration[lo : lo + 12_800],
                        properties={"wf_increment": 1.0 / TDMS_RATE, "wf_start_time": start},
                    ),
                    ChannelObject("Process", "Bearing temperature", temperature[lo // 640 : lo // 640 + 20]),
                ]
            )
    return vibration, temperature


def _write_csv(path: Path, start_ns: int, kelvin: list[float]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["asset_id", "time", "temperature"])
        for i, value in enumerate(kelvin):
            writer.writerow(["fan3", iso_time(start_ns + i * NS_PER_S), f"{value}"])
        writer.writerow(["fan3", "not a time", "300.0"])  # a bad row: skipped and counted


def _pipeline() -> PipelineSettings:
    def sensor(name: str, rate: float, kind: SensorKind = SensorKind.VIBRATION) -> SensorSettings:
        return SensorSettings(name=name, kind=kind, sample_rate_hz=rate)

    return PipelineSettings(
        assets=(
            AssetSettings(
                asset_id="press-07",
                sensors=(sensor("vibration", WAV_RATE), sensor("vibration_axial", WAV_RATE)),
            ),
            AssetSettings(
                asset_id="motor-12",
                sensors=(sensor("vibration", TDMS_RATE), sensor("temperature", 10.0, SensorKind.SLOW)),
            ),
            AssetSettings(asset_id="fan-03", sensors=(sensor("temperature", 1.0, SensorKind.SLOW),)),
        )
    )


@pytest.fixture
def recording_agent(
    broker: MosquittoServer, workdir: Path, unique_id: Callable[[str], str]
) -> Iterator[tuple[EdgeAgent, RecordingPipeline]]:
    gateway_id = unique_id("gw")
    with recording_edge_agent(broker, workdir / "edge", gateway_id=gateway_id, pipeline=_pipeline()) as agent:
        yield agent


@pytest.mark.slow
def test_wav_tdms_and_csv_recordings_arrive_in_the_edge_agent_with_their_asset_sensor_time_and_scale(
    broker: MosquittoServer, workdir: Path, recording_agent: tuple[EdgeAgent, RecordingPipeline]
) -> None:
    agent, received = recording_agent
    settings = _settings(workdir, broker)
    wav = settings.watch_dir / "press07_0001.wav"
    counts = _write_wav(wav, 30_000)
    wav_mtime_ns = now_ns() - 5 * NS_PER_S
    os.utime(wav, ns=(wav_mtime_ns, wav_mtime_ns))
    tdms_start = np.datetime64(now_ns() - 60 * NS_PER_S, "ns")
    vibration, temperature = _write_tdms(
        settings.watch_dir / "motor12.tdms", tdms_start.astype("datetime64[us]")
    )
    csv_start = (now_ns() - 120 * NS_PER_S) // 1000 * 1000  # the CSV writes µs
    kelvin = [293.15 + 0.5 * i for i in range(30)]
    _write_csv(settings.watch_dir / "fan3.csv", csv_start, kelvin)

    with ConnectorRuntime(settings) as runtime:
        connector = FilesConnector(
            settings=settings, runtime=runtime, progress=ProgressRecord(settings.state_file)
        )
        with running_in_thread(connector.run, name="test-files-connector", join_s=10):
            wait_until(lambda: len(connector.outcomes) == 3, timeout_s=30)
            wait_until(lambda: len(received.samples("motor-12", "vibration")) == 25_600, timeout_s=20)
            wait_until(lambda: len(received.samples("press-07", "vibration_axial")) == 30_000, timeout_s=20)
            wait_until(lambda: len(received.samples("fan-03", "temperature")) == 30, timeout_s=20)
            wait_until(lambda: len(received.samples("motor-12", "temperature")) == 40, timeout_s=20)
    assert connector.outcomes == {"press07_0001.wav": "done", "motor12.tdms": "done", "fan3.csv": "done"}
    assert sorted(p.name for p in settings.done_dir.iterdir()) == [
        "fan3.csv",
        "motor12.tdms",
        "press07_0001.wav",
    ]
    assert list(settings.watch_dir.iterdir()) == []

    # WAV: scaled counts, at the file's rate, ending at its modification time, seq rising per stream.
    for index, sensor in enumerate(("vibration", "vibration_axial")):
        batches = received.of("press-07", sensor)
        np.testing.assert_allclose(
            received.samples("press-07", sensor), counts[:, index] * COUNTS_TO_G, rtol=1e-6
        )
        assert batches[0].start_ns == wav_mtime_ns - round(30_000 * NS_PER_S / WAV_RATE)
        assert {b.sample_rate_hz for b in batches} == {WAV_RATE}
        assert [b.seq for b in batches] == list(range(len(batches)))
    # TDMS: rate from wf_increment, start from wf_start_time; the channel without them from its mapping.
    motor = received.of("motor-12", "vibration")
    written_ns = int(tdms_start.astype("datetime64[us]").astype("datetime64[ns]").astype(np.int64))
    # TDMS keeps time as seconds + 2^-64 fractions; npTDMS truncates it to whole microseconds on reading,
    # so a written microsecond can come back one lower (seen: .129148 read as .129147)
    assert written_ns - 1_000 <= motor[0].start_ns <= written_ns
    assert motor[0].sample_rate_hz == TDMS_RATE
    np.testing.assert_allclose(received.samples("motor-12", "vibration"), vibration, rtol=1e-6)
    np.testing.assert_array_equal(received.samples("motor-12", "temperature"), temperature.astype(np.float32))
    assert received.of("motor-12", "temperature")[0].sample_rate_hz == 10.0
    # CSV: its own times, kelvin to °C by the mapping's offset, the bad row counted.
    fan = received.of("fan-03", "temperature")
    assert (fan[0].start_ns, fan[0].sample_rate_hz) == (csv_start, 1.0)
    assert [b.start_ns for b in fan] == [csv_start + i * NS_PER_S for i in range(len(fan))]
    np.testing.assert_allclose(
        received.samples("fan-03", "temperature"), np.array(kelvin) - 273.15, atol=1e-4
    )
    assert runtime.metrics.rejected == {"csv_time": 1}
    assert runtime.metrics.values_read == 2 * 30_000 + 25_600 + 40 + 30
    # The agent took every batch as a regular stream: nothing rejected, windows cut.
    assert agent.pipeline.metrics.rejected == {}
    assert agent.pipeline.metrics.windows_cut > 0


def _truncated_wav(path: Path) -> None:
    _write_wav(path, 10_000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncated_tdms(path: Path) -> None:
    _write_tdms(path, np.datetime64(now_ns(), "ns").astype("datetime64[us]"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3000])


@pytest.mark.parametrize(
    "case",
    [
        ("press07_cut.wav", _truncated_wav, "truncated_file"),
        ("motor12_cut.tdms", _truncated_tdms, "truncated_file"),
        ("motor12_text.tdms", lambda path: path.write_bytes(b"not a TDMS file " * 64), "unreadable_file"),
        ("fan3_header.csv", lambda path: path.write_text("when,value\n1,2\n"), "unreadable_file"),
        ("other.wav", lambda path: _write_wav(path, 100), "unmapped_file"),
    ],
    ids=["truncated-wav", "truncated-tdms", "text-as-tdms", "csv-without-header", "wav-without-mapping"],
)
def test_a_bad_recording_is_quarantined_with_its_reason_counted_and_nothing_published(
    broker: MosquittoServer,
    workdir: Path,
    unique_id: Callable[[str], str],
    case: tuple[str, Callable[[Path], object], str],
) -> None:
    name, write, kind = case
    settings = _settings(workdir, broker)
    path = settings.watch_dir / name
    write(path)
    collector = RawCollector(broker, ["press-07", "motor-12", "fan-03"], unique_id("c"))
    try:
        with ConnectorRuntime(settings) as runtime:
            connector = FilesConnector(
                settings=settings, runtime=runtime, progress=ProgressRecord(settings.state_file)
            )
            assert connector.process(path, threading.Event()) == "quarantined"
            assert runtime.publisher.flush(timeout_s=5)
        assert runtime.metrics.rejected == {kind: 1}
        assert name in runtime.metrics.last_error
        assert runtime.metrics.values_published == 0
    finally:
        collector.close()
    assert not path.exists()
    assert (settings.quarantine_dir / name).exists()
    reason = (settings.quarantine_dir / f"{name}.reason.txt").read_text()
    assert reason.startswith(f"{kind}: ")
    assert ProgressRecord(settings.state_file).state.current is None


@pytest.mark.slow
def test_a_restart_mid_file_resumes_where_the_progress_record_says_and_publishes_nothing_twice(
    broker: MosquittoServer, workdir: Path, unique_id: Callable[[str], str]
) -> None:
    settings = _settings(workdir, broker, speed=4.0, checkpoint_s=0.05)  # 2.3 s of recording: ~0.6 s
    wav = settings.watch_dir / "press07_long.wav"
    counts = _write_wav(wav, 60_000, seed=7)
    collector = RawCollector(broker, ["press-07"], unique_id("c"))
    try:
        stop = threading.Event()
        with ConnectorRuntime(settings) as runtime:
            first = FilesConnector(
                settings=settings, runtime=runtime, progress=ProgressRecord(settings.state_file)
            )

            def stop_after_three_batches() -> None:
                wait_until(lambda: len(collector.of("press-07", "vibration")) >= 3)
                stop.set()

            watcher = threading.Thread(target=stop_after_three_batches)
            watcher.start()
            assert first.process(wav, stop) == "stopped"
            watcher.join()
        record = ProgressRecord(settings.state_file)
        assert record.state.current is not None
        assert 0 < record.state.current.position < 60_000
        assert wav.exists()

        resumed_settings = settings.model_copy(update={"speed": 0.0})
        with ConnectorRuntime(resumed_settings, initial_seqs=record.seqs) as runtime:
            second = FilesConnector(settings=resumed_settings, runtime=runtime, progress=record)
            assert second.process(wav, threading.Event()) == "done"
        collector.wait_samples("press-07", "vibration", 60_000)
    finally:
        collector.close()
    batches = collector.of("press-07", "vibration")
    assert [b.seq for b in batches] == list(range(len(batches)))  # no batch twice, none missing
    np.testing.assert_allclose(
        collector.samples("press-07", "vibration"), counts[:, 0] * COUNTS_TO_G, rtol=1e-6
    )
    starts = [b.start_ns for b in batches]
    assert starts == sorted(starts)
    assert (settings.done_dir / wav.name).exists()
