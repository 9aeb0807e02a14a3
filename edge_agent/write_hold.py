"""The in-memory hold of outbound messages the disk queue could not take (disk full, I/O error).

While the queue's commits fail, the queue writer keeps what it could not write here, bounded by
`queue.hold_max_messages`, and writes it first, in order, once a commit succeeds again. When the hold is
full it sheds by the disk queue's own policy: the oldest aggregates first, then snapshots, alerts last.
Held messages have no `seq` yet (the queue assigns it when it commits them), so a message shed here never
leaves a gap in the gateway's sequence; each is counted by kind (`queue.hold_dropped.<kind>`).
A held message does not survive a restart of the agent.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

from edge_agent.disk_queue import KINDS, Outbound, kind_of

__all__ = ["WriteHold"]


class WriteHold:
    """A bounded FIFO of outbound messages waiting for the disk queue to accept writes again.

    Not thread-safe: only the queue writer thread uses it (the heartbeat reads its gauges).

    Args:
        max_messages: most messages held; beyond it the lowest-priority, oldest ones are shed.
    """

    def __init__(self, *, max_messages: int) -> None:
        self._max_messages = max_messages
        self._held: collections.deque[Outbound] = collections.deque()
        self.dropped: dict[str, int] = dict.fromkeys(KINDS, 0)

    def __len__(self) -> int:
        return len(self._held)

    def keep(self, messages: Sequence[Outbound]) -> int:
        """Hold `messages` after those already held, shedding by priority if over the bound.

        Returns:
            How many messages were shed by this call.
        """
        self._held.extend(messages)
        excess = len(self._held) - self._max_messages
        if excess <= 0:
            return 0
        shed = 0
        for kind in KINDS:
            if shed >= excess:
                break
            kept: collections.deque[Outbound] = collections.deque()
            for message in self._held:
                if shed < excess and kind_of(message) == kind:
                    self.dropped[kind] += 1
                    shed += 1
                else:
                    kept.append(message)
            self._held = kept
        return shed

    def take(self) -> list[Outbound]:
        """Everything held, oldest first; the hold is empty after."""
        held = list(self._held)
        self._held.clear()
        return held
