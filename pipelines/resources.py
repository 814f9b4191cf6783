"""Resources: where the data lake is, where transcripts come from, where MLflow writes."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from lexgpt import paths


class DataLake(dg.ConfigurableResource):
    """The folder holding every asset's files (``data_lake/`` in the repo by default)."""

    root: str | None = None

    def path(self, *parts: str) -> Path:
        base = Path(self.root) if self.root else paths.data_lake()
        return base.joinpath(*parts)


class LexicapSource(dg.ConfigurableResource):
    """Where the VTT files come from.

    ``folder`` (or the ``LEXICAP_DIR`` environment variable) names a local folder of
    ``episode_NNN_{large,small}.vtt`` files; with neither, Lexicap's official ``data.zip``
    is downloaded once into the cache and extracted. ``variant`` picks the Whisper model.
    """

    folder: str | None = None
    variant: str = "large"

    def resolve(self) -> Path:
        from lexgpt.lexicap import resolve_source

        return resolve_source(self.variant, folder=Path(self.folder) if self.folder else None)


class MlflowTracking(dg.ConfigurableResource):
    """Plain mlflow, configured for the local sqlite store (``mlruns/mlflow.db``)."""

    tracking_uri: str | None = None
    experiment: str = "lexgpt"
    registered_model: str = "lexgpt"

    def setup(self) -> str:
        """Point mlflow at the store and the experiment; returns the experiment id."""
        from lexgpt import tracking

        tracking.configure(self.tracking_uri)
        return tracking.get_or_create_experiment(self.experiment)
