"""Resources: where the data lake is, where transcripts come from, where MLflow writes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from lexgpt.infra import paths
from pipelines.lake_layout import LakeLayout


class DataLake(dg.ConfigurableResource):
    """The folder holding every asset's files (``data_lake/`` in the repo by default).

    Assets and checks reach it through :meth:`for_asset` / :meth:`for_check`: a
    :class:`~pipelines.lake_layout.LakeLayout` (the only code that knows a path in the lake)
    that sees only the folders the asset graph declares, so an undeclared read fails.

    An asset that uses the lake holds the home's writer lock while it runs (see
    :mod:`pipelines.writers`): a materialization started from the UI while ``lexgpt refresh``
    writes fails at once, naming the refresh's PID, instead of both writing.
    """

    root: str | None = None
    # Asset checks only read; they take the lake as ``lake_reader`` (read_only), so the
    # checks of one asset can run side by side, and beside a writer, without the lock.
    read_only: bool = False
    _writer: Any = PrivateAttr(default=None)

    def whole_lake(self) -> LakeLayout:
        """The layout over every folder: for ``lexgpt status``, never for an asset."""
        return LakeLayout(Path(self.root) if self.root else paths.data_lake())

    def path(self, *parts: str) -> Path:
        return self.whole_lake().path(*parts)

    def for_asset(self, context: dg.AssetExecutionContext) -> LakeLayout:
        """What the running asset may touch: its own folder and its declared ``deps``."""
        key = context.asset_key
        folders = {key, *context.assets_def.asset_deps[key]}
        return self.whole_lake().scoped((k.to_user_string() for k in folders), who=key.to_user_string())

    def for_check(self, context: dg.AssetCheckExecutionContext) -> LakeLayout:
        """What a running check may read: the asset it checks and the ``additional_deps`` it
        declares (a check comparing shards with the corpus declares the corpus)."""
        specs = list(context.check_specs)
        keys = {s.asset_key for s in specs} | {d.asset_key for s in specs for d in s.additional_deps}
        return self.whole_lake().scoped((k.to_user_string() for k in keys), who=", ".join(s.name for s in specs))

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
        from lexgpt.data.lexicap import resolve_source

        return resolve_source(self.variant, folder=Path(self.folder) if self.folder else None)

    def data_version(self) -> str:
        """The source's version now: a hash of its VTT files' names and contents."""
        from lexgpt.data import lexicap
        from lexgpt.infra.hashing import short

        return short(lexicap.source_fingerprint(self.resolve(), self.variant))


class MlflowTracking(dg.ConfigurableResource):
    """Plain mlflow, configured for the local sqlite store (``mlruns/mlflow.db``)."""

    tracking_uri: str | None = None
    experiment: str = "lexgpt"
    registered_model: str = "lexgpt"

    def setup(self) -> str:
        """Point mlflow at the store and the experiment; returns the experiment id."""
        from lexgpt.tracking import runs

        runs.configure(self.tracking_uri)
        return runs.get_or_create_experiment(self.experiment)

    def run_url(self, run_id: str, experiment_id: str) -> str:
        """The run's page in ``lexgpt mlflow-ui`` (127.0.0.1:5000)."""
        return f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"

    def tracking_uri_now(self) -> str:
        """The store's URI, resolved (a training process in another working folder uses it)."""
        from lexgpt.tracking import runs

        return runs.configure(self.tracking_uri)


class TrainingLauncher(dg.ConfigurableResource):
    """How ``trained_model`` starts its training process tree (launched through the ``pipes``
    resource, a Dagster Pipes client).

    One rank runs as a plain process; several run under ``torchrun``: ``nproc_per_node``
    ranks (default: every visible CUDA GPU, else 1) on each of ``nnodes`` machines, which
    meet at ``rdzv_endpoint`` (``host:port`` of the first). The training code is the same
    in every case::

        >>> TrainingLauncher(nproc_per_node=2, python="python").command("plan.json", cuda_devices=0)
        ['python', '-m', 'torch.distributed.run', '--nproc-per-node=2', '--nnodes=1', '--standalone', '-m', 'pipelines.training_process', 'plan.json']
        >>> TrainingLauncher(python="python").command("plan.json", cuda_devices=0)
        ['python', '-m', 'pipelines.training_process', 'plan.json']
    """

    nproc_per_node: int | None = None
    nnodes: int = 1
    rdzv_endpoint: str | None = None
    rdzv_id: str = "lexgpt"
    python: str | None = None  # the training process's interpreter (default: this one)
    # A bad environment setting, kept for the training to fail on in one line: raising in
    # from_env would stop the Dagster definitions (every command, the UI) from loading.
    env_error: str | None = None

    @classmethod
    def from_env(cls) -> "TrainingLauncher":
        """Settings from ``LEXGPT_NPROC_PER_NODE``, ``LEXGPT_NNODES`` and ``LEXGPT_RDZV_ENDPOINT``
        (unset: the defaults), so ``lexgpt refresh`` and the UI pick them up without code.

        >>> import os; os.environ["LEXGPT_NNODES"] = "two"
        >>> TrainingLauncher.from_env().world_size(0)
        Traceback (most recent call last):
        ...
        ValueError: LEXGPT_NNODES='two': expected a whole number of at least 1
        >>> del os.environ["LEXGPT_NNODES"]
        """
        import os

        errors = []

        def number(name: str) -> int | None:
            raw = os.environ.get(name, "").strip()
            if not raw:
                return None
            if not raw.isdigit() or int(raw) < 1:
                errors.append(f"{name}={raw!r}: expected a whole number of at least 1")
                return None
            return int(raw)

        return cls(nproc_per_node=number("LEXGPT_NPROC_PER_NODE"), nnodes=number("LEXGPT_NNODES") or 1,
                   rdzv_endpoint=os.environ.get("LEXGPT_RDZV_ENDPOINT") or None,
                   env_error="; ".join(errors) or None)

    def world_size(self, cuda_devices: int) -> int:
        """Ranks in all: ``nproc_per_node`` (default: one per visible GPU, else 1) x ``nnodes``."""
        if self.env_error:
            raise ValueError(self.env_error)
        return (self.nproc_per_node or max(cuda_devices, 1)) * self.nnodes

    def command(self, plan_file: str | Path, cuda_devices: int) -> list[str]:
        if self.env_error:
            raise ValueError(self.env_error)
        nproc = self.nproc_per_node or max(cuda_devices, 1)
        if nproc < 1 or self.nnodes < 1:
            raise ValueError(f"trainer: nproc_per_node ({nproc}) and nnodes ({self.nnodes}) must be at least 1")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError(f"trainer: nnodes={self.nnodes} needs rdzv_endpoint (host:port of the first node)")
        python = self.python or sys.executable
        entry = ["-m", "pipelines.training_process", str(plan_file)]
        if nproc == 1 and self.nnodes == 1:
            return [python, *entry]
        torchrun = [python, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", f"--nnodes={self.nnodes}"]
        if self.rdzv_endpoint:
            torchrun += ["--rdzv-backend=c10d", f"--rdzv-endpoint={self.rdzv_endpoint}", f"--rdzv-id={self.rdzv_id}"]
        else:
            torchrun.append("--standalone")
        return [*torchrun, *entry]
