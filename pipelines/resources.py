"""Resources: where the data lake is, where transcripts come from, where MLflow writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from lexgpt import paths


class DataLake(dg.ConfigurableResource):
    """The folder holding every asset's files (``data_lake/`` in the repo by default).

    The lake's layout lives here and nowhere else: each asset writes into the folder
    named after it, and reads its inputs through the readers below, so no asset module
    knows where another one keeps its files.

    An asset that uses the lake holds the home's writer lock while it runs (see
    :mod:`pipelines.writers`): a materialization started from the UI while ``lexgpt refresh``
    writes fails at once, naming the refresh's PID, instead of both writing.
    """

    root: str | None = None
    # Asset checks only read; they take the lake as ``lake_reader`` (read_only), so the
    # checks of one asset can run side by side, and beside a writer, without the lock.
    read_only: bool = False
    _writer: Any = PrivateAttr(default=None)

    def path(self, *parts: str) -> Path:
        base = Path(self.root) if self.root else paths.data_lake()
        return base.joinpath(*parts)

    # --- the layout: one folder per asset
    def cues_file(self) -> Path:
        return self.path("raw_subtitles", "cues.parquet")

    def corpus_file(self) -> Path:
        return self.path("cleaned_corpus", "corpus.parquet")

    def tokenizer_file(self) -> Path:
        return self.path("bpe_vocab", "tokenizer.json")

    def hf_tokenizer_file(self) -> Path:
        return self.path("bpe_vocab", "hf_tokenizer.json")

    def shards_dir(self) -> Path:
        return self.path("token_shards")

    def ngram_result_file(self) -> Path:
        """The baseline's score as JSON: val_bpc, val_loss, order, ..."""
        return self.path("ngram_baseline", "result.json")

    def model_dir(self) -> Path:
        """model.pt and config.json; ``runs/<key>/`` holds each training's checkpoints."""
        return self.path("trained_model")

    def samples_file(self) -> Path:
        return self.path("evaluation_samples", "samples.parquet")

    # --- readers of what upstream assets wrote
    def read_cues(self):
        import pyarrow.parquet as pq

        return pq.read_table(self.cues_file())

    def read_corpus(self):
        """The cleaned corpus as a polars DataFrame (episode_id, text, n_chars, ...)."""
        import polars as pl

        return pl.read_parquet(self.corpus_file())

    def load_tokenizer(self):
        from lexgpt.bpe import BPETokenizer

        return BPETokenizer.load(self.tokenizer_file())

    def read_ngram_result(self) -> dict[str, Any]:
        import json

        return json.loads(self.ngram_result_file().read_text())

    def files_metadata(self, asset: str) -> dict[str, str]:
        """``{files_sha256: ...}`` over the asset's folder: the last metadata an asset adds."""
        from pipelines.lake import files_metadata

        return files_metadata(self.path(asset))

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.read_only:
            return
        from pipelines.writers import hold_home

        run_id = context.run.run_id if context.run else None
        self._writer = hold_home(f"dagster run {(run_id or '?')[:8]}", context.instance, log=context.log.warning)
        held = self._writer.__enter__()
        if run_id:
            held.record_run(run_id)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._writer is not None:
            self._writer.__exit__(None, None, None)
            self._writer = None


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

    def data_version(self) -> str:
        """The source's version now: a hash of its VTT files' names and contents."""
        from lexgpt import lexicap
        from lexgpt.hashing import short

        return short(lexicap.source_fingerprint(self.resolve(), self.variant))


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
