"""trained_model launches training as its own process tree (Dagster Pipes, torchrun for
several ranks): the same losses on 2 gloo ranks as on one process at the same global
batch, through the asset; a killed Dagster step leaves no rank behind, and the relaunch
resumes from the checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY_CONFIG, lexgpt_cli
from pipelines.resources import TrainingLauncher


def test_launch_command_per_setup():
    plan = "/lake/trained_model/runs/k/plan.json"
    one = TrainingLauncher(python="py").command(plan, cuda_devices=0)
    assert one == ["py", "-m", "pipelines.training_process", plan]
    gpus = TrainingLauncher(python="py").command(plan, cuda_devices=8)
    assert gpus[:5] == ["py", "-m", "torch.distributed.run", "--nproc-per-node=8", "--nnodes=1"]
    nodes = TrainingLauncher(python="py", nnodes=4, rdzv_endpoint="node0:29400").command(plan, cuda_devices=8)
    assert "--rdzv-endpoint=node0:29400" in nodes and "--nnodes=4" in nodes and "--standalone" not in nodes
    with pytest.raises(ValueError, match="nnodes=2 needs rdzv_endpoint"):
        TrainingLauncher(nnodes=2).command(plan, cuda_devices=1)


def test_launcher_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("LEXGPT_NPROC_PER_NODE", "2")
    assert TrainingLauncher.from_env().nproc_per_node == 2
    monkeypatch.setenv("LEXGPT_NPROC_PER_NODE", "two")
    launcher = TrainingLauncher.from_env()  # the definitions still load ...
    with pytest.raises(ValueError, match="LEXGPT_NPROC_PER_NODE='two'"):  # ... the training says why
        launcher.command("plan.json", cuda_devices=0)


def _history(home: Path) -> list[dict]:
    return json.loads((home / "data_lake" / "trained_model" / "history.json").read_text())


def _config(tmp_path: Path, name: str, **fields) -> Path:
    text = TINY_CONFIG
    for key, value in fields.items():
        text = text.replace("  max_val_bpc: 10.0\n", f"  max_val_bpc: 10.0\n  {key}: {value}\n")
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.slow  # two tiny trainings, one of them on two processes
@pytest.mark.timeout(900)
def test_two_gloo_ranks_through_the_asset_match_one_process(lexgpt_home: Path, tmp_path: Path, monkeypatch):
    # Checkpoints by time after almost every step and an eval every 5 steps: every decision
    # that triggers a collective comes up many times, on both ranks at once or the run hangs.
    common = {"checkpoint_minutes": 0.0002, "eval_every": 5, "batch_size": 4}
    monkeypatch.setenv("LEXGPT_NPROC_PER_NODE", "2")
    two = lexgpt_cli("refresh", "--config", str(_config(tmp_path, "two.yaml", **common, grad_accum=1)),
                     "--only", "raw_subtitles", "cleaned_corpus", "bpe_vocab", "token_shards", "trained_model")
    assert "world=2" in two.stderr, two.stderr[-2000:]
    ranks2 = _history(lexgpt_home)
    monkeypatch.delenv("LEXGPT_NPROC_PER_NODE")
    one = lexgpt_cli("refresh", "--config", str(_config(tmp_path, "one.yaml", **common, grad_accum=2)),
                     "--only", "trained_model")
    assert "world=1" in one.stderr
    ranks1 = _history(lexgpt_home)
    losses = lambda rows: [(r["step"], r.get("train_loss"), r.get("val_bpc")) for r in rows]  # noqa: E731
    assert len(ranks2) == len(ranks1) >= 6
    for a, b in zip(losses(ranks2), losses(ranks1)):
        assert a[0] == b[0]
        for x, y in zip(a[1:], b[1:]):
            assert (x is None) == (y is None) and (x is None or x == pytest.approx(y, abs=1e-5)), (a, b)


def _training_pids(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


@pytest.mark.slow  # a training killed mid-run, then resumed
@pytest.mark.timeout(900)
def test_killed_dagster_step_leaves_no_rank_and_the_relaunch_resumes(lexgpt_home: Path, tmp_path: Path):
    config = _config(tmp_path, "long.yaml", checkpoint_minutes=0.0002).read_text()
    config_file = tmp_path / "long.yaml"
    config_file.write_text(config.replace("max_steps: 30", "max_steps: 400"))
    lexgpt_cli("refresh", "--config", str(config_file), "--only", "raw_subtitles", "cleaned_corpus",
               "bpe_vocab", "token_shards")
    runs = lexgpt_home / "data_lake" / "trained_model" / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "refresh", "--config", str(config_file),
                             "--only", "trained_model"], cwd=REPO, env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list(runs.glob("*/checkpoint.pt")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert list(runs.glob("*/checkpoint.pt")), f"no checkpoint (rc={proc.poll()})"
        marker = str(next(runs.glob("*/plan.json")))
        assert _training_pids(marker), "the training process is not running"
        proc.send_signal(signal.SIGKILL)  # the Dagster step only, as a crash or an OOM kill would
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _training_pids(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _training_pids(marker), "a training process outlived the Dagster step that launched it"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    resumed = lexgpt_cli("refresh", "--config", str(config_file), "--only", "trained_model")
    first = int(resumed.stderr.split("from step ")[1].split()[0])
    assert first > 0, resumed.stderr[-2000:]
    steps = [row["step"] for row in _history(lexgpt_home) if "train_loss" in row]
    assert steps == sorted(set(steps)) and steps[-1] == 400  # no step replayed, none missing at the end


def test_the_dagster_training_config_defers_to_the_library_recipe():
    """One place per default: each training field of the run config is None (the library's
    recipe decides) or equal to the library's default; none is unknown to the library."""
    import dataclasses

    from lexgpt.modeling.model import GPTConfig
    from lexgpt.training.train import TrainConfig
    from pipelines.assets.trained_model import TrainingConfig, training_plan

    library = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    model_fields = {f.name for f in dataclasses.fields(GPTConfig)}
    own = {"preset", "max_val_bpc"}  # the asset's: which recipe, and its check's bound
    for name, field in TrainingConfig.model_fields.items():
        if name in own:
            continue
        assert name in library or name in model_fields, f"{name} is not a library setting"
        assert field.default is None or field.default == library.get(name), name
    _, model_cfg, train_cfg = training_plan(TrainingConfig(preset="cpu-small"), 1000)
    assert train_cfg == TrainConfig.for_preset("cpu-small", seed=TrainingConfig().seed)
    assert model_cfg == GPTConfig.from_preset("cpu-small", 1000)


def _interrupted_then(error: BaseException):
    """A rank-0 body that sees Ctrl-C, has it swallowed (as a compile in progress can), then fails."""

    def rank0(plan, world):
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pass
        raise error

    return rank0


def _fails_with(error: BaseException):
    """A rank-0 body that fails at once, with no Ctrl-C."""

    def rank0(plan, world):
        raise error

    return rank0


def test_a_failure_after_ctrl_c_exits_130_without_a_traceback(tmp_path: Path, monkeypatch):
    from pipelines import training_process

    plan = tmp_path / "plan.json"
    plan.write_text("{}")
    monkeypatch.delenv(training_process.LAUNCHER_PID_ENV, raising=False)
    monkeypatch.setattr(training_process, "_rank0", _interrupted_then(FileNotFoundError("pipes messages file")))
    assert training_process.main([str(plan)]) == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    # Without a Ctrl-C the same failure is a failure.
    monkeypatch.setattr(training_process, "_rank0", _fails_with(FileNotFoundError("pipes messages file")))
    with pytest.raises(FileNotFoundError):
        training_process.main([str(plan)])
