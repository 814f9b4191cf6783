"""lexgpt.tracking: run logging (params, live metrics, artifacts) and the champion gate, against a
throw-away sqlite store. The logged model (pyfunc, serving, exports) is test_mlflow_pyfunc.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from lexgpt.tracking import registry, run_artifacts, runs
from mlflow_store import LINEAGE, history_rows, store  # noqa: F401 - store is a fixture

REPO = Path(__file__).resolve().parents[1]


def _artifact_files(run_id: str, path: str = "") -> set[str]:
    client = MlflowClient()
    out = set()
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            out |= _artifact_files(run_id, info.path)
        else:
            out.add(info.path)
    return out


# --------------------------------------------------------------------------- run logging


def test_experiment_artifacts_live_under_mlruns(store, tmp_path):
    exp_id = runs.get_or_create_experiment()
    assert runs.get_or_create_experiment() == exp_id  # idempotent
    exp = MlflowClient().get_experiment(exp_id)
    assert exp.name == "lexgpt"
    assert exp.artifact_location.startswith((tmp_path / "mlruns").as_uri())


def test_experiment_opens_on_the_training_view(store):
    exp_id = runs.get_or_create_experiment()
    client = MlflowClient()
    assert client.get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"
    client.delete_experiment_tag(exp_id, "mlflow.experimentKind")  # a store from before the tag
    assert runs.get_or_create_experiment() == exp_id
    assert client.get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"


def test_live_metrics_reach_the_run_while_it_is_open(store):
    seen = []
    with runs.start_run("live") as run:
        live = runs.LiveMetrics(run.info.run_id, on_row=lambda step, m: seen.append(step))
        live(10, {"train_loss": 3.0, "lr": 1e-3})
        live(20, {"train_loss": 2.5, "val_bpc": 2.2, "note": "skipped"})
        import mlflow as _mlflow

        _mlflow.flush_async_logging()
        client = MlflowClient()
        # visible while the run is still RUNNING, which is what the MLflow UI shows live
        assert client.get_run(run.info.run_id).info.status == "RUNNING"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [10, 20]
        # a resumed checkpoint's earlier rows are back-filled, the live ones not repeated
        history = [{"step": 5.0, "train_loss": 3.5}, {"step": 10.0, "train_loss": 3.0},
                   {"step": 20.0, "train_loss": 2.5, "val_bpc": 2.2}]
        assert live.close(history) == 1
    assert seen == [10, 20]
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in losses) == [5, 10, 20]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "val_bpc")] == [2.2]
    assert runs.show_score_in_run_name(run.info.run_id, 2.2) == "2.200 bpc live"
    assert runs.show_score_in_run_name(run.info.run_id, 2.1) == "2.100 bpc live"  # not prefixed twice
    assert client.get_run(run.info.run_id).info.run_name == "2.100 bpc live"


def test_relative_sqlite_uri_is_refused():
    with pytest.raises(ValueError, match="relative sqlite"):
        runs.configure("sqlite:///mlruns/mlflow.db")


def test_log_training_run_metrics_params_tags_artifacts(store, tmp_path, monkeypatch):
    calls = []
    real_log_batch = MlflowClient.log_batch

    def spy(self, run_id, metrics=(), params=(), tags=(), *args, **kwargs):
        calls.append((len(metrics or ()), len(params or ()), len(tags or ())))
        return real_log_batch(self, run_id, metrics, params, tags, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", spy)

    from lexgpt.tokenizer.bpe import BPETokenizer

    tok = tmp_path / "tokenizer.json"
    BPETokenizer([]).save(tok)
    rules = tmp_path / "cleaning_rules.toml"
    rules.write_text('[[rule]]\nname = "x"\npattern = "a"\nreplacement = "b"\n')
    config = {
        "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128},
        "optim": {"lr": 1e-3, "betas": [0.9, 0.95], "schedule": {"warmup": 100}},
        "max_steps": 600,
        "preset": "cpu-tiny",
    }
    history = history_rows()
    samples = [{"prompt": "What is love?", "completion": "I think that love is"},
               {"prompt": "Hello", "completion": "world"}]
    run_id = run_artifacts.log_training_run(
        config=config, history=history, tokenizer_path=tok, samples=samples,
        tags=LINEAGE, run_name="unit", rules_path=rules,
    )
    assert mlflow.active_run() is None  # the run it started was ended

    client = MlflowClient()
    run = client.get_run(run_id)

    # metrics: every value landed (MLflow splits the batch into chunks it accepts)
    metric_calls = [m for m, _, _ in calls if m]
    n_values = 600 * 4 + 12 * 2  # train_loss, lr, grad_norm, tokens_per_s; val_loss, val_bpc
    assert sum(metric_calls) == n_values
    assert len(client.get_metric_history(run_id, "train_loss")) == 600
    assert len(client.get_metric_history(run_id, "val_loss")) == 12
    bpc = client.get_metric_history(run_id, "val_bpc")
    assert sorted(m.step for m in bpc) == list(range(0, 600, 50))
    assert "note" not in run.data.metrics

    # params: flattened
    params = run.data.params
    assert params["model.n_layer"] == "4"
    assert params["optim.schedule.warmup"] == "100"
    assert params["optim.betas"] == "[0.9, 0.95]"
    assert params["preset"] == "cpu-tiny"

    # tags
    tags = run.data.tags
    for key, value in LINEAGE.items():
        assert tags[f"lexgpt.{key}"] == value
    assert tags["lexgpt.git_commit"]

    # artifacts: loss curve PNG, tokenizer, samples table
    files = _artifact_files(run_id)
    assert run_artifacts.LOSS_CURVE_ARTIFACT in files
    assert "tokenizer/tokenizer.json" in files
    assert run_artifacts.HF_TOKENIZER_ARTIFACT in files
    assert "cleaning_rules/cleaning_rules.toml" in files
    hf = json.loads(Path(client.download_artifacts(run_id, run_artifacts.HF_TOKENIZER_ARTIFACT, str(tmp_path / "hf"))).read_text())
    assert hf["model"]["type"] == "BPE"
    assert run_artifacts.SAMPLES_ARTIFACT in files
    png = Path(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=run_artifacts.LOSS_CURVE_ARTIFACT, dst_path=str(tmp_path / "dl")
    ))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 5000
    assert str(png).startswith(str(tmp_path))
    assert run_artifacts.logged_loss_curve(run_id) == png.read_bytes()  # what the Dagster asset shows
    table = client.load_table(run.info.experiment_id, run_artifacts.SAMPLES_ARTIFACT, run_ids=[run_id])
    assert list(table["completion"]) == ["I think that love is", "world"]
    # artifacts physically live under LEXGPT_HOME/mlruns
    assert (tmp_path / "mlruns" / "artifacts").is_dir()


def test_log_training_run_uses_active_run(store):
    with runs.start_run("outer", tags={"corpus_version": "c1"}) as run:
        rid = run_artifacts.log_training_run(config={"a": 1}, history=[{"step": 0, "train_loss": 1.0}])
        assert rid == run.info.run_id
    data = MlflowClient().get_run(rid).data
    assert data.params == {"a": "1"}
    assert data.tags["lexgpt.corpus_version"] == "c1"
    assert run_artifacts.logged_loss_curve(run_artifacts.log_training_run(config={"a": 1})) is None  # no history, no plot


def test_flatten():
    flat = runs.flatten({"a": {"b": {"c": 1}, "d": 2}, "e": {}})
    assert flat == {"a.b.c": 1, "a.d": 2, "e": "{}"}


def test_git_commit(tmp_path):
    assert runs.git_commit(tmp_path) == "unknown"
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@e", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    assert runs.git_commit(repo) == "unknown"  # no commit yet
    (repo / "f.txt").write_text("1")
    subprocess.run(["git", "add", "f.txt"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], cwd=repo, check=True)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    assert runs.git_commit(repo) == sha
    (repo / "f.txt").write_text("2")
    assert runs.git_commit(repo) == sha + "-dirty"


# --------------------------------------------------------------------------- registry


def _fake_version(client: MlflowClient, tmp_path: Path, name: str, bpc: float) -> str:
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException:
        pass
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    mv = client.create_model_version(name, src.as_uri(), tags={"val_bpc": repr(bpc), **{
        f"lexgpt.{k}": v for k, v in LINEAGE.items()}})
    return str(mv.version)


def test_champion_gate(store, tmp_path):
    client = MlflowClient()
    v1 = _fake_version(client, tmp_path, "lexgpt", 2.0)
    assert registry.promote("lexgpt", v1, 2.0) == "champion"
    v2 = _fake_version(client, tmp_path, "lexgpt", 2.5)
    assert registry.promote("lexgpt", v2, 2.5) == "challenger"
    assert str(client.get_model_version_by_alias("lexgpt", "champion").version) == v1
    assert str(client.get_model_version_by_alias("lexgpt", "challenger").version) == v2
    v_tie = _fake_version(client, tmp_path, "lexgpt", 2.0)
    assert registry.promote("lexgpt", v_tie, 2.0) == "challenger"  # strictly lower only
    v3 = _fake_version(client, tmp_path, "lexgpt", 1.5)
    assert registry.promote("lexgpt", v3, 1.5) == "champion"
    assert str(client.get_model_version_by_alias("lexgpt", "champion").version) == v3
    v_nan = _fake_version(client, tmp_path, "lexgpt", float("nan"))
    assert registry.promote("lexgpt", v_nan, float("nan")) == "challenger"

    # manual rollback, and lineage through the alias
    registry.set_alias("lexgpt", "champion", v1)
    info = registry.lineage("models:/lexgpt@champion")
    assert info["version"] == v1
    assert info["val_bpc"] == 2.0
    assert "champion" in info["aliases"]
    for key, value in LINEAGE.items():
        assert info[f"lexgpt.{key}"] == value
    assert registry.lineage(f"models:/lexgpt/{v3}")["val_bpc"] == 1.5
    with pytest.raises(ValueError):
        registry.lineage("models:/lexgpt")
