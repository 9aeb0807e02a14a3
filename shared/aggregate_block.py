"""Aggregates row by row (`Aggregate`) and column by column (`AggregateBlock`), both ways, and the block's
statistics as one numpy array.

A gateway packs runs of its aggregates into blocks before they go upstream (`pack_aggregates`); the cloud
reads a block's columns directly (`block_stats`, the per-row lists), and `unpack_block` gives the rows back
for code that wants them one by one. Feature statistics travel as float32, the precision the cloud stores.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain

import numpy as np
from msgspec.structs import astuple

from shared.messages import Aggregate, AggregateBlock, FeatureStats, ModelKind, ModelRef, ScoreStats

__all__ = ["block_stats", "pack_aggregates", "unpack_block"]


def _runs(aggregates: Sequence[Aggregate], max_rows: int) -> Iterator[Sequence[Aggregate]]:
    """Consecutive aggregates of one gateway, feature spec and feature names, at most `max_rows` each."""
    start = 0
    key: tuple[object, ...] = ()
    for index, message in enumerate(aggregates):
        message_key = (message.gateway_id, message.feature_spec, len(message.features), *message.features)
        if index == start:
            key = message_key
        elif message_key != key or index - start >= max_rows:
            yield aggregates[start:index]
            start, key = index, message_key
    if start < len(aggregates):
        yield aggregates[start:]


def _pack_run(run: Sequence[Aggregate]) -> AggregateBlock:
    first = run[0]
    assets: dict[str, int] = {}
    models: dict[tuple[str, ModelKind], int] = {}
    n = len(first.features)
    values = np.fromiter(
        chain.from_iterable(map(astuple, chain.from_iterable(m.features.values() for m in run))),
        dtype=np.float64,
        count=len(run) * n * 3,
    )
    stats = values.reshape(len(run), n, 3).transpose(0, 2, 1).astype("<f4")
    scores = [m.score for m in run]
    return AggregateBlock(
        gateway_id=first.gateway_id,
        feature_spec=first.feature_spec,
        feature_names=list(first.features),
        asset=[assets.setdefault(m.asset_id, len(assets)) for m in run],
        model=[models.setdefault((m.model_version, m.model_kind), len(models)) for m in run],
        assets=list(assets),
        models=[ModelRef(version, kind) for version, kind in models],
        seq=[m.seq for m in run],
        period_start_ns=[m.period_start_ns for m in run],
        period_end_ns=[m.period_end_ns for m in run],
        score_mean=[s.mean for s in scores],
        score_max=[s.max for s in scores],
        threshold=[s.threshold for s in scores],
        n_windows=[s.n_windows for s in scores],
        n_above_threshold=[s.n_above_threshold for s in scores],
        stats=stats.tobytes(),
    )


def pack_aggregates(aggregates: Sequence[Aggregate], *, max_rows: int = 10_000) -> list[AggregateBlock]:
    """Blocks of `aggregates`, in order: each block one run of the same gateway and feature set.

    Args:
        aggregates: the rows.
        max_rows: most rows in one block.
    """
    return [_pack_run(run) for run in _runs(aggregates, max_rows)]


def block_stats(block: AggregateBlock) -> np.ndarray:
    """The block's feature statistics as a read-only float32 array of shape (rows, 3, features): mean, min,
    max (a view of the decoded bytes, no copy)."""
    return np.frombuffer(block.stats, dtype="<f4").reshape(len(block.asset), 3, len(block.feature_names))


def unpack_block(block: AggregateBlock) -> list[Aggregate]:
    """The block's rows as `Aggregate` messages (statistics as stored: float32 values)."""
    stats = block_stats(block).astype(np.float64).transpose(0, 2, 1).tolist()
    names = block.feature_names
    return [
        Aggregate(
            gateway_id=block.gateway_id,
            asset_id=block.assets[block.asset[i]],
            seq=block.seq[i],
            period_start_ns=block.period_start_ns[i],
            period_end_ns=block.period_end_ns[i],
            feature_spec=block.feature_spec,
            features={name: FeatureStats(*row) for name, row in zip(names, stats[i], strict=True)},
            score=ScoreStats(
                mean=block.score_mean[i],
                max=block.score_max[i],
                threshold=block.threshold[i],
                n_windows=block.n_windows[i],
                n_above_threshold=block.n_above_threshold[i],
            ),
            model_version=block.models[block.model[i]].version,
            model_kind=block.models[block.model[i]].kind,
        )
        for i in range(len(block.asset))
    ]
