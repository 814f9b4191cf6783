"""The training process ``trained_model`` launches: ``python -m pipelines.training_process PLAN``.

Run by a Dagster Pipes client, alone or as every rank under ``torchrun``. ``PLAN`` is the
JSON file the asset wrote: the model and training config, the shards folder, the tokenizer
and the work folder (checkpoints, weights). Each rank trains (:func:`lexgpt.training.train_loop.train`);
rank 0 alone talks back: live metrics into the MLflow run the asset opened, log lines and
the final numbers through Pipes. The other ranks are silent.

If the process that launched it dies (``kill -9`` of the Dagster step), each rank notices
within a second and ends itself: no orphaned ranks hold the GPUs or the lake. A relaunch
with the same plan resumes from the last checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

LAUNCHER_PID_ENV = "LEXGPT_LAUNCHER_PID"
HISTORY_FILE = "history.json"


def _end_with_launcher(pid: int, poll_s: float = 1.0) -> None:
    """Terminate this process once ``pid`` (the Dagster step that launched it) is gone."""

    def watch() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except PermissionError:  # alive, another user's: keep watching
                pass
            time.sleep(poll_s)

    threading.Thread(target=watch, name="lexgpt-launcher-watch", daemon=True).start()


def _train(plan: dict, on_metrics=None, progress: bool = False):
    from lexgpt.modeling.model import GPTConfig
    from lexgpt.tokenizer.bpe import BPETokenizer
    from lexgpt.training.train_config import TrainConfig
    from lexgpt.training.train_loop import train

    token_chars = BPETokenizer.load(plan["tokenizer"]).token_char_counts()
    return train(GPTConfig.from_dict(plan["model"]), TrainConfig(**plan["train"]), plan["shards_dir"],
                 plan["out_dir"], token_chars, on_metrics=on_metrics, progress=progress)


def _summary(result, world: int) -> dict:
    """The numbers rank 0 reports back as the materialization's metadata."""
    keep = ("val_loss", "val_bpc", "val_fraction", "steps", "best_step", "tokens_seen", "elapsed_s",
            "tokens_per_s", "mfu", "dtype")
    return {**{k: getattr(result, k) for k in keep}, "world_size": world}


def _rank0(plan: dict, world: int) -> None:
    from dagster_pipes import open_dagster_pipes

    from lexgpt.infra import atomic
    from lexgpt.tracking import runs

    with open_dagster_pipes() as pipes:
        run_id = pipes.get_extra("mlflow_run_id")
        runs.configure(pipes.get_extra("tracking_uri"))

        def on_row(step: int, metrics: dict) -> None:
            if "val_bpc" in metrics:
                pipes.log.info(f"step {step}: val {metrics['val_bpc']:.4f} bits/char")

        live = runs.LiveMetrics(run_id, on_row=on_row)
        result = _train(plan, on_metrics=live, progress=True)
        live.close(result.history)
        atomic.write_json(Path(plan["out_dir"]) / HISTORY_FILE, result.history)
        pipes.report_asset_materialization(metadata=_summary(result, world))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m pipelines.training_process PLAN.json", file=sys.stderr)
        return 2
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if launcher and launcher.isdigit():
        _end_with_launcher(int(launcher))
    plan = json.loads(Path(args[0]).read_text())
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    from lexgpt.infra.interrupts import stop_on_interrupt

    with stop_on_interrupt() as stop:  # the training loop's own use shares this request
        try:
            if rank == 0:
                _rank0(plan, world)
            else:
                _train(plan)
        except KeyboardInterrupt:  # Ctrl-C: the launcher says so in one line; the checkpoint stays
            return 130
        except Exception:
            # After a Ctrl-C, a failure on the way out is the interrupt's, not news: a
            # library that swallowed the KeyboardInterrupt (a compile in progress) fails
            # later instead, or the launcher stopped waiting (its Pipes client's termination
            # timeout) and removed the Pipes files our closing message goes to.
            if stop.requested:
                return 130
            raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
