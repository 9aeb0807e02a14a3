"""Reassembling a model artifact from its retained chunks (`shared.model_transfer` is the wire format)."""

from __future__ import annotations

import dataclasses
from typing import Final

from shared.model_transfer import Chunk

__all__ = ["VERSIONS_BUFFERED", "ChunkAssembly"]

VERSIONS_BUFFERED: Final = 2  # versions of one target whose chunks are kept at once; the oldest goes first


@dataclasses.dataclass
class ChunkAssembly:
    """Chunks received for one target, per deployment version."""

    chunks: dict[int, dict[int, bytes]] = dataclasses.field(default_factory=dict)
    counts: dict[int, int] = dataclasses.field(default_factory=dict)

    def add(self, chunk: Chunk, max_bytes: int) -> bool:
        """Keep one chunk; False if it contradicts the version's chunk count or exceeds `max_bytes`."""
        if chunk.version not in self.chunks and len(self.chunks) >= VERSIONS_BUFFERED:
            del self.chunks[min(self.chunks)]
        parts = self.chunks.setdefault(chunk.version, {})
        if self.counts.setdefault(chunk.version, chunk.chunk_count) != chunk.chunk_count:
            return False
        if sum(len(p) for p in parts.values()) + len(chunk.data) > max_bytes:
            return False
        parts[chunk.index] = chunk.data
        return True

    def artifact(self, version: int, chunk_count: int) -> bytes | None:
        """The artifact of `version` once all `chunk_count` chunks are here, else None."""
        parts = self.chunks.get(version, {})
        if self.counts.get(version) != chunk_count or len(parts) < chunk_count:
            return None
        return b"".join(parts[i] for i in range(chunk_count))

    def discard_up_to(self, version: int) -> None:
        """Forget the chunks of `version` and every older one."""
        for known in [v for v in self.chunks if v <= version]:
            del self.chunks[known]
            self.counts.pop(known, None)
