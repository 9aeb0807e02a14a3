"""The recorded-files connector (`forewarn connect files`): WAV, CSV and TDMS recordings dropped in a folder.

The connector scans `watch_dir` every `poll_interval_s` for files matching `patterns` that have not changed
for `settle_s` (oldest first), and publishes each one's samples as raw batches, paced at `speed` recorded
seconds per wall second (0: as fast as the broker takes them). A finished file moves to `done_dir`; a file
that cannot be read (truncated, not the format its name says, no mapped channel) moves to
`quarantine_dir` with `<name>.reason.txt` next to it, and is counted in the heartbeat's `rejected`.

Formats:

* WAV (`scipy.io.wavfile`, memory-mapped; integer or float PCM): one stream per mapped channel index, at the
  file's rate. WAV carries no time: the first sample is at the file's modification time minus its duration
  (the recorder finished writing when it closed the file), or now (`start_time`).
* TDMS (npTDMS): one stream per mapped `group/channel`, at `1 / wf_increment` from `wf_start_time` (UTC);
  a channel without them takes the mapping's `sample_rate_hz` and the fallback start time.
* CSV: the samples format `forewarn edge score` reads (`edge_agent.samples_csv`), with its own times;
  columns map by `asset_id/sensor` or keep their names (`csv_passthrough`). Bad rows are skipped and
  counted (`rejected` `csv_<reason>`).

Nothing is read twice after a restart: a durable progress record (`state_file`, written atomically) holds
the file in progress, how far it got (frames for WAV and TDMS, batches for CSV, after they were written to
the broker) and each stream's next `seq`. A restart resumes there; anything re-sent after the last record
carries the `seq` it had before, so the edge agent drops it as a duplicate.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec
import numpy as np
import numpy.typing as npt
import scipy.io.wavfile
from nptdms import TdmsFile

from edge_agent.connectors.publishing import SamplePublisher, StreamKey
from edge_agent.connectors.runtime import ConnectorRuntime
from edge_agent.connectors.settings import ChannelTarget, FileChannel, FilesConnectorSettings
from edge_agent.samples_csv import CsvCounts, csv_batches
from shared.atomic_files import write_atomically
from shared.errors import ContractError, ForewarnError
from shared.timebase import NS_PER_S, now_ns

__all__ = ["FilesConnector", "Outcome", "UnreadableFileError", "run"]

logger = logging.getLogger(__name__)

Outcome = Literal["done", "quarantined", "stopped"]
_TDMS_CHUNK_FRAMES = 1 << 18  # frames read per TDMS or WAV chunk when publishing as fast as possible
_ROOM_WAIT_S = 0.5
_RATE_DIGITS = 9  # 1 / wf_increment is rarely exact in binary: 25600.000000000004 -> 25600


class UnreadableFileError(ForewarnError):
    """A recording cannot be read; `reason` says why (it goes in the quarantine reason file)."""

    def __init__(self, path: Path, reason: str, kind: str = "unreadable_file") -> None:
        super().__init__(f"{path.name}: {reason}")
        self.path, self.reason, self.kind = path, reason, kind


# --- the durable progress record ---------------------------------------------------------------------------


class _FileProgress(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    size: int
    mtime_ns: int
    start_ns: int  # the first sample's time as decided when the file was first opened
    position: int  # frames (WAV, TDMS) or batches (CSV) written to the broker


class _State(msgspec.Struct, kw_only=True):
    version: int = 1
    current: _FileProgress | None = None
    seqs: list[tuple[str, str, int]] = []


class ProgressRecord:
    """The files connector's durable progress (`state_file`), rewritten atomically on each change."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.state = self._load()

    def _load(self) -> _State:
        try:
            return msgspec.json.decode(self._path.read_bytes(), type=_State)
        except FileNotFoundError:
            return _State()
        except (msgspec.DecodeError, OSError) as exc:
            # Unreadable progress: start afresh but keep the old record for inspection.
            kept = self._path.with_suffix(self._path.suffix + ".bad")
            logger.error("progress record %s unreadable (%s); kept as %s", self._path, exc, kept)
            with contextlib.suppress(OSError):
                self._path.replace(kept)
            return _State()

    @property
    def seqs(self) -> dict[StreamKey, int]:
        """Each stream's next `seq`."""
        return {(asset, sensor): seq for asset, sensor, seq in self.state.seqs}

    def save(self, current: _FileProgress | None, seqs: dict[StreamKey, int]) -> None:
        """Record `current` and the streams' next `seq` durably."""
        self.state = _State(current=current, seqs=sorted((a, s, q) for (a, s), q in seqs.items()))
        write_atomically(self._path, msgspec.json.encode(self.state), make_parents=True)


# --- recordings --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Chunk:
    """Consecutive samples of one channel, calibrated, ready for `SamplePublisher.add_block`."""

    target: ChannelTarget
    start_ns: int
    sample_rate_hz: float
    values: npt.NDArray[np.float32]
    end_position: int  # the recording's position once this chunk (and those before it) are written


class _Recording(Protocol):
    """A recording opened and checked: its chunks from a position on, in a fixed order."""

    first_ns: int

    def chunks(self, position: int) -> Iterator[_Chunk]: ...

    def close(self) -> None: ...


def _calibrated(raw: npt.NDArray[np.generic], target: ChannelTarget) -> npt.NDArray[np.float32]:
    values = np.asarray(raw, dtype=np.float32)
    if target.scale != 1.0:
        values = values * np.float32(target.scale)
    if target.offset != 0.0:
        values = values + np.float32(target.offset)
    return values


def _mappings(settings: FilesConnectorSettings, path: Path) -> dict[str, FileChannel]:
    """The channel mappings that apply to a file, by channel name (the first match wins)."""
    found: dict[str, FileChannel] = {}
    for mapping in settings.channels:
        if fnmatch.fnmatchcase(path.name, mapping.match):
            found.setdefault(mapping.channel, mapping)
    return found


def _clean_rate(rate_hz: float) -> float:
    return float(f"{rate_hz:.{_RATE_DIGITS}g}")


class _WavRecording:
    def __init__(
        self, path: Path, *, mappings: dict[str, FileChannel], start_ns: int | None, frames: int
    ) -> None:
        try:
            rate, data = scipy.io.wavfile.read(path, mmap=True)
        except (ValueError, OSError, EOFError) as exc:  # scipy says ValueError for truncated and unknown data
            raise UnreadableFileError(path, f"not a readable WAV file ({exc})", _kind_of(exc)) from exc
        self._data = data.reshape(len(data), -1)
        self.sample_rate_hz = float(rate)
        n_channels = self._data.shape[1]
        self._channels = [(int(name), m) for name, m in mappings.items() if name.isdigit()]
        self._channels = [(index, m) for index, m in self._channels if index < n_channels]
        if not self._channels:
            raise UnreadableFileError(
                path,
                f"none of its {n_channels} channels is mapped (channels: {sorted(mappings)})",
                "unmapped_file",
            )
        duration_ns = round(len(self._data) * NS_PER_S / self.sample_rate_hz)
        self.first_ns = start_ns if start_ns is not None else _fallback_start(path, duration_ns)
        self._frames = frames

    def chunks(self, position: int) -> Iterator[_Chunk]:
        total = len(self._data)
        for lo in range(position, total, self._frames):
            hi = min(lo + self._frames, total)
            start_ns = self.first_ns + round(lo * NS_PER_S / self.sample_rate_hz)
            for index, target in self._channels:
                values = _calibrated(self._data[lo:hi, index], target)
                yield _Chunk(target, start_ns, self.sample_rate_hz, values, hi)

    def close(self) -> None:
        del self._data  # unmaps the file


@dataclass(frozen=True, slots=True)
class _TdmsChannel:
    target: FileChannel
    length: int
    sample_rate_hz: float
    start_ns: int
    channel: Any  # the npTDMS channel (untyped library): its `read_data(offset, length)`


class _TdmsRecording:
    def __init__(
        self, path: Path, *, mappings: dict[str, FileChannel], start_ns: int | None, frames: int
    ) -> None:
        with _npTDMS_warnings() as warnings:
            try:
                self._file = TdmsFile.open(path)
            except (ValueError, OSError, EOFError, KeyError) as exc:
                raise UnreadableFileError(path, f"not a readable TDMS file ({exc})", _kind_of(exc)) from exc
        try:
            if warnings:
                raise UnreadableFileError(path, f"truncated TDMS file ({warnings[0]})", "truncated_file")
            self._channels = self._mapped_channels(path, mappings, start_ns)
        except UnreadableFileError:
            self._file.close()
            raise
        self._frames = frames
        self.first_ns = min(channel.start_ns for channel in self._channels)

    def _mapped_channels(
        self, path: Path, mappings: dict[str, FileChannel], start_ns: int | None
    ) -> list[_TdmsChannel]:
        fallback = start_ns
        channels: list[_TdmsChannel] = []
        for group in self._file.groups():
            for channel in group.channels():
                target = mappings.get(f"{group.name}/{channel.name}")
                if target is None or len(channel) == 0:
                    continue
                rate, first_ns = self._timing(path, channel, target)
                if first_ns is None:
                    duration_ns = round(len(channel) * NS_PER_S / rate)
                    fallback = fallback if fallback is not None else _fallback_start(path, duration_ns)
                    first_ns = fallback
                channels.append(_TdmsChannel(target, len(channel), rate, first_ns, channel))
        if not channels:
            raise UnreadableFileError(
                path, f"no mapped channel with data (mappings: {sorted(mappings)})", "unmapped_file"
            )
        return channels

    @staticmethod
    def _timing(path: Path, channel: Any, target: FileChannel) -> tuple[float, int | None]:
        properties = channel.properties
        increment = properties.get("wf_increment")
        if isinstance(increment, (int, float)) and increment > 0:
            rate = _clean_rate(1.0 / float(increment))
        elif target.sample_rate_hz is not None:
            rate = target.sample_rate_hz
        else:
            raise UnreadableFileError(
                path,
                f"channel {target.channel} has no wf_increment and its mapping no sample_rate_hz",
                "no_rate",
            )
        start = properties.get("wf_start_time")
        first_ns = (
            int(start.astype("datetime64[ns]").astype(np.int64)) if isinstance(start, np.datetime64) else None
        )
        return rate, first_ns

    def chunks(self, position: int) -> Iterator[_Chunk]:
        longest = max(channel.length for channel in self._channels)
        for lo in range(position, longest, self._frames):
            hi = min(lo + self._frames, longest)
            for channel in self._channels:
                if lo >= channel.length:
                    continue
                n = min(hi, channel.length) - lo
                raw = channel.channel.read_data(lo, n)
                start_ns = channel.start_ns + round(lo * NS_PER_S / channel.sample_rate_hz)
                yield _Chunk(
                    channel.target, start_ns, channel.sample_rate_hz, _calibrated(raw, channel.target), hi
                )

    def close(self) -> None:
        self._file.close()


class _CsvRecording:
    def __init__(
        self, path: Path, *, mappings: dict[str, FileChannel], passthrough: bool, counts: CsvCounts
    ) -> None:
        self._path = path
        self._mappings = mappings
        self._passthrough = passthrough
        self.counts = counts
        self._rates: dict[tuple[str, str], float | None] = {}
        for name, mapping in mappings.items():
            asset_id, _, sensor = name.partition("/")
            self._rates[(asset_id, sensor)] = mapping.sample_rate_hz
        self.first_ns = 0

    def chunks(self, position: int) -> Iterator[_Chunk]:
        batches = csv_batches(self._path, self._rates, self.counts)
        for index, batch in enumerate(batches):
            if index < position:
                continue
            target: ChannelTarget | None = self._mappings.get(f"{batch.asset_id}/{batch.sensor}")
            if target is None:
                if not self._passthrough:
                    continue
                target = ChannelTarget(asset_id=batch.asset_id, sensor=batch.sensor)
            yield _Chunk(
                target, batch.start_ns, batch.sample_rate_hz, _calibrated(batch.samples, target), index + 1
            )

    def close(self) -> None:
        """Nothing to release: the CSV reader closes the file when it is done."""


def _kind_of(exc: BaseException) -> str:
    text = str(exc).lower()
    truncated = ("greater than file size", "cannot reshape", "unexpected end", "eof", "less data")
    return "truncated_file" if any(word in text for word in truncated) else "unreadable_file"


def _fallback_start(path: Path, duration_ns: int) -> int:
    return path.stat().st_mtime_ns - duration_ns


class _WarningCatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _npTDMS_warnings() -> Iterator[list[str]]:  # noqa: N802 - the library's name
    """Collect what npTDMS warns while a file is opened: it reads a truncated file as far as it can and only
    warns, and a truncated recording must be quarantined, not half published."""
    catcher = _WarningCatcher()
    library_logger = logging.getLogger("nptdms")
    library_logger.addHandler(catcher)
    try:
        yield catcher.messages
    finally:
        library_logger.removeHandler(catcher)


# --- the connector -----------------------------------------------------------------------------------------


class FilesConnector:
    """Publishes the recordings of a folder, one at a time, oldest first.

    Args:
        settings: the connector's settings.
        runtime: its publisher and counters.
        progress: the durable progress record.
    """

    def __init__(
        self, *, settings: FilesConnectorSettings, runtime: ConnectorRuntime, progress: ProgressRecord
    ) -> None:
        self._settings = settings
        self._publisher: SamplePublisher = runtime.publisher
        self._metrics = runtime.metrics
        self._progress = progress
        self.outcomes: dict[str, Outcome] = {}

    def run(self, stop: threading.Event) -> None:
        """Scan and publish until `stop` is set."""
        for folder in (self._settings.watch_dir, self._settings.done_dir, self._settings.quarantine_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._metrics.source_connected = True
        while not stop.is_set():
            ready = self.ready_files()
            for path in ready:
                if stop.is_set():
                    break
                self.outcomes[path.name] = self.process(path, stop)
            if not ready:
                stop.wait(self._settings.poll_interval_s)

    def ready_files(self) -> list[Path]:
        """Files of the watch folder matching the patterns, unchanged for `settle_s`, oldest first; the one
        in progress first of all."""
        now = time.time_ns()
        settle_ns = round(self._settings.settle_s * NS_PER_S)
        found: list[tuple[int, str, Path]] = []
        for path in self._settings.watch_dir.iterdir():
            if path.name.startswith(".") or not any(
                fnmatch.fnmatch(path.name.lower(), p) for p in self._settings.patterns
            ):
                continue
            try:
                status = path.stat()
            except FileNotFoundError:
                continue
            if path.is_file() and now - status.st_mtime_ns >= settle_ns:
                found.append((status.st_mtime_ns, path.name, path))
        current = self._progress.state.current
        found.sort(key=lambda item: (current is None or item[1] != current.name, item[0], item[1]))
        return [path for _, _, path in found]

    def process(self, path: Path, stop: threading.Event) -> Outcome:
        """Publish one file from where its progress record says, then move it to the done folder, or
        quarantine it when it cannot be read."""
        status = path.stat()
        progress = self._resume_point(path, status.st_size, status.st_mtime_ns)
        try:
            recording = self._open(path, progress)
        except UnreadableFileError as exc:
            return self._quarantine(path, exc)
        if progress is None:
            progress = _FileProgress(
                name=path.name,
                size=status.st_size,
                mtime_ns=status.st_mtime_ns,
                start_ns=recording.first_ns,
                position=0,
            )
        try:
            outcome = self._publish(recording, progress, stop)
        except UnreadableFileError as exc:
            return self._quarantine(path, exc)
        except (ContractError, OSError, UnicodeDecodeError, ValueError) as exc:
            return self._quarantine(path, UnreadableFileError(path, str(exc)))
        finally:
            recording.close()
        return outcome if outcome == "stopped" else self._finish(path)

    def _resume_point(self, path: Path, size: int, mtime_ns: int) -> _FileProgress | None:
        current = self._progress.state.current
        if current is not None and (current.name, current.size, current.mtime_ns) == (
            path.name,
            size,
            mtime_ns,
        ):
            return current
        return None

    def _open(self, path: Path, progress: _FileProgress | None) -> _Recording:
        mappings = _mappings(self._settings, path)
        start_ns = progress.start_ns if progress is not None else None
        if self._settings.start_time == "now" and start_ns is None:
            start_ns = now_ns()
        frames = self._frames_per_chunk()
        suffix = path.suffix.lower()
        if suffix == ".wav":
            return _WavRecording(path, mappings=mappings, start_ns=start_ns, frames=frames)
        if suffix == ".tdms":
            return _TdmsRecording(path, mappings=mappings, start_ns=start_ns, frames=frames)
        if suffix == ".csv":
            return _CsvRecording(
                path, mappings=mappings, passthrough=self._settings.csv_passthrough, counts=CsvCounts()
            )
        raise UnreadableFileError(
            path, f"no reader for {suffix or 'files without a suffix'}", "unknown_format"
        )

    def _frames_per_chunk(self) -> int:
        """Chunks of one batch when paced (each goes out on time), of many when as fast as possible."""
        per_batch = self._settings.publishing.max_batch_samples
        if self._settings.speed > 0:
            return per_batch
        return max(per_batch, _TDMS_CHUNK_FRAMES // per_batch * per_batch)

    def _publish(self, recording: _Recording, progress: _FileProgress, stop: threading.Event) -> Outcome:
        speed = self._settings.speed
        wall_start = time.monotonic()
        origin_ns: int | None = None
        next_checkpoint = wall_start + self._settings.checkpoint_s
        position = progress.position
        for chunk in recording.chunks(progress.position):
            if origin_ns is None:
                origin_ns = chunk.start_ns
            if speed > 0 and stop.wait(
                max(0.0, wall_start + (chunk.start_ns - origin_ns) / NS_PER_S / speed - time.monotonic())
            ):
                break
            if not self._hand_over(chunk, stop):
                break
            self._metrics.values_read += len(chunk.values)
            position = chunk.end_position
            if time.monotonic() >= next_checkpoint:
                if not self._checkpoint(progress, position, stop):
                    return "stopped"
                next_checkpoint = time.monotonic() + self._settings.checkpoint_s
        else:
            if isinstance(recording, _CsvRecording):
                for reason, count in recording.counts.bad.items():
                    self._metrics.reject(f"csv_{reason}", count)
            # Written to the broker, the file moves; its record goes with the move (a crash in between
            # re-sends the tail since the last checkpoint under the same seqs: duplicates the edge drops).
            return "done" if self._drain(stop) else "stopped"
        self._checkpoint(progress, position, stop)
        return "stopped"

    def _hand_over(self, chunk: _Chunk, stop: threading.Event) -> bool:
        """Queue a chunk, waiting for room in the publisher's buffer; False if stopped meanwhile."""
        n = len(chunk.values)
        while not self._publisher.wait_for_room(n, _ROOM_WAIT_S):
            if stop.is_set():
                return False
        target = chunk.target
        return self._publisher.add_block(
            target.asset_id, target.sensor, chunk.start_ns, chunk.sample_rate_hz, chunk.values
        )

    def _drain(self, stop: threading.Event) -> bool:
        """Wait until everything queued is written to the broker; False if stopped first."""
        while not self._publisher.flush(timeout_s=_ROOM_WAIT_S):
            if stop.is_set():
                return False
        return True

    def _checkpoint(self, progress: _FileProgress, position: int, stop: threading.Event) -> bool:
        """Wait until everything queued is written, then record `position`; False if stopped first."""
        if not self._drain(stop):
            return False
        self._progress.save(msgspec.structs.replace(progress, position=position), self._publisher.next_seqs())
        return True

    def _finish(self, path: Path) -> Outcome:
        _move_unique(path, self._settings.done_dir)
        self._progress.save(None, self._publisher.next_seqs())
        logger.info("published %s", path.name)
        return "done"

    def _quarantine(self, path: Path, error: UnreadableFileError) -> Outcome:
        moved = _move_unique(path, self._settings.quarantine_dir)
        reason_file = moved.with_name(moved.name + ".reason.txt")
        write_atomically(reason_file, f"{error.kind}: {error.reason}\n".encode())
        self._metrics.reject(error.kind)
        self._metrics.error(str(error))
        self._progress.save(None, self._publisher.next_seqs())
        logger.warning("quarantined %s: %s", path.name, error.reason)
        return "quarantined"


def _move_unique(path: Path, folder: Path) -> Path:
    """Move `path` into `folder`, adding `.1`, `.2`, ... to its name if one of that name is there."""
    target = folder / path.name
    for index in range(1, 1_000_000):
        if not target.exists():
            break
        target = folder / f"{path.name}.{index}"
    shutil.move(path, target)
    return target


def run(settings: FilesConnectorSettings, stop: threading.Event) -> None:
    """Run the files connector until `stop` is set."""
    progress = ProgressRecord(settings.state_file)
    with ConnectorRuntime(settings, initial_seqs=progress.seqs) as runtime:
        FilesConnector(settings=settings, runtime=runtime, progress=progress).run(stop)
