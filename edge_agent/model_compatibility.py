"""Whether an active model fits an asset's feature vectors, and which of its columns to pass it.

A model fits when its manifest names the asset's feature spec and every feature it takes is a column of
the asset's vector; it may take a subset, in its own order. A model that does not fit scores nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edge_agent.scoring import Scorer
from shared.messages import ModelManifest

__all__ = ["ActiveModel", "ModelCompatibility", "ModelSource", "check_compatibility"]

logger = logging.getLogger(__name__)


class ActiveModel(Protocol):
    """What the pipeline needs of an active model (`model_store.LoadedModel` is one)."""

    @property
    def manifest(self) -> ModelManifest:
        """The model's manifest (feature spec and names)."""
        ...

    @property
    def scorer(self) -> Scorer:
        """The model's scorer."""
        ...


class ModelSource(Protocol):
    """Where the active model of a target comes from (`model_store.ModelStore` is one)."""

    def active(self, target: str) -> ActiveModel | None:
        """The target's active model, or None."""
        ...


@dataclass
class ModelCompatibility:
    """Whether the asset's vectors fit a model: the columns to pass it (None: all, in order)."""

    model: ActiveModel
    columns: npt.NDArray[np.intp] | None
    is_match: bool


def check_compatibility(
    model: ActiveModel, *, asset_id: str, spec_id: str, feature_names: tuple[str, ...]
) -> ModelCompatibility:
    """Check a model against an asset's feature vectors; a mismatch is logged as a warning.

    Args:
        model: the asset target's active model.
        asset_id: the asset, for the warning.
        spec_id: the asset's feature spec id (`name@version`).
        feature_names: the asset's feature vector columns, in order.

    Returns:
        The model, the columns of the asset's vector to pass it (None: all of them, in order), and whether
        it fits at all.
    """
    manifest = model.manifest
    names = tuple(model.scorer.feature_names)
    index = {name: j for j, name in enumerate(feature_names)}
    missing = [name for name in names if name not in index]
    if manifest.feature_spec != spec_id or missing:
        logger.warning(
            "model %s does not fit asset %s (spec %s, asset spec %s, missing features %s): "
            "its windows are not scored",
            model.scorer.version,
            asset_id,
            manifest.feature_spec,
            spec_id,
            missing[:5],
        )
        return ModelCompatibility(model, None, is_match=False)
    if names == feature_names:
        return ModelCompatibility(model, None, is_match=True)
    return ModelCompatibility(model, np.array([index[name] for name in names], dtype=np.intp), is_match=True)
