"""The data lake's layout: one folder per asset, and the only code that knows a path in it.

Every asset and check reaches the lake through :meth:`LakeLayout.scoped` (the ``DataLake``
resource's ``for_asset`` / ``for_check``), which sees only the folders the Dagster graph
says it may: an asset its own folder and those of the assets it declares as ``deps``; a
check the asset it checks and its ``additional_deps``. Any other folder is refused in one
line, so a read the graph does not show fails the first time it runs (the pipeline tests
run every asset and check)::

    >>> lake = LakeLayout("/lake").scoped({"token_shards", "bpe_vocab"}, who="ngram_baseline")
    >>> str(lake.shards_dir())
    '/lake/token_shards'
    >>> lake.corpus_file()
    Traceback (most recent call last):
    ...
    pipelines.lake_layout.UndeclaredLakeRead: ngram_baseline reads cleaned_corpus/ without declaring it: add cleaned_corpus to its deps (or stop reading it)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class UndeclaredLakeRead(PermissionError):
    """An asset or check touched a folder of the lake its declared inputs do not include."""


class LakeLayout:
    """Where each asset keeps its files, and readers of what upstream assets wrote."""

    def __init__(self, root: str | Path, allowed: frozenset[str] | None = None, who: str = "") -> None:
        self.root = Path(root)
        self.allowed = allowed  # None: the whole lake (status and tests, not assets)
        self.who = who

    def scoped(self, folders: Iterable[str], who: str) -> LakeLayout:
        """A view that may touch only ``folders`` (asset names)."""
        return LakeLayout(self.root, frozenset(folders), who)

    def path(self, asset: str, *parts: str) -> Path:
        if self.allowed is not None and asset not in self.allowed:
            raise UndeclaredLakeRead(f"{self.who} reads {asset}/ without declaring it: add {asset} to its deps "
                                     "(or stop reading it)")
        return self.root.joinpath(asset, *parts)

    # --- one folder per asset
    def cues_file(self) -> Path:
        return self.path("raw_subtitles", "cues.parquet")

    def corpus_file(self) -> Path:
        return self.path("cleaned_corpus", "corpus.parquet")

    def corpus_lineage_file(self) -> Path:
        return self.path("cleaned_corpus", "lineage.json")

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
        """model.pt, config.json and history.json; ``runs/<key>/`` holds each training's
        checkpoints."""
        return self.path("trained_model")

    def model_weights_file(self) -> Path:
        return self.path("trained_model", "model.pt")

    def model_config_file(self) -> Path:
        return self.path("trained_model", "config.json")

    def model_history_file(self) -> Path:
        """The training's metrics, one row per logged step (what MLflow's charts show)."""
        return self.path("trained_model", "history.json")

    def training_run_dir(self, run_key: str) -> Path:
        """One training's work area: same inputs + config + training code -> same folder, so
        a killed run resumes from its checkpoint (the others go once a run's weights are in
        the lake)."""
        return self.path("trained_model", "runs", run_key)

    def registration_file(self) -> Path:
        """Which registry version ``registered_model`` made of the weights, and its alias."""
        return self.path("registered_model", "registration.json")

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
        from lexgpt.tokenizer.bpe import BPETokenizer

        return BPETokenizer.load(self.tokenizer_file())

    def read_ngram_result(self) -> dict[str, Any]:
        return json.loads(self.ngram_result_file().read_text())

    def read_corpus_lineage(self) -> dict[str, Any]:
        """What cleaned_corpus recorded beside its file: the rules it was built with, ..."""
        return json.loads(self.corpus_lineage_file().read_text())

    def read_model_history(self) -> list[dict[str, float]]:
        return json.loads(self.model_history_file().read_text())

    def files_metadata(self, asset: str) -> dict[str, str]:
        """``{files_sha256: ...}`` over the asset's folder: the last metadata an asset adds."""
        from pipelines.lake import files_metadata

        return files_metadata(self.path(asset))
