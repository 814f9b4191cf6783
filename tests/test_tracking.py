"""lexgpt.tracking.runs and the lexgpt.tracking.mlflow_model pyfunc, against a throw-away sqlite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from lexgpt.tracking import packaging, registry, run_artifacts, runs
from conftest import free_port, kill_group, lexgpt_cli

REPO = Path(__file__).resolve().parents[1]

LINEAGE = {
    "corpus_version": "corpus-abc123",
    "vocab_version": "vocab-def456",
    "shards_version": "shards-789",
    "rules_hash": "rules-0f0f",
}

SENTENCES = [
    "The following is a conversation with a researcher on the Lex Fridman podcast.",
    "We talk about science, technology, and the nature of intelligence.",
    "I think that love is the answer to most questions about the meaning of life.",
    "Neural networks learn representations from data through gradient descent.",
    "That's such an interesting question. I think that consciousness is a mystery.",
] * 4


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh sqlite store + LEXGPT_HOME under tmp_path; tracking configured for it."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("LEXGPT_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    # configure() sets MLflow's process-global URIs: put them back after the test
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)
    assert runs.configure() == uri
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()


def _history(n_steps: int = 600, val_every: int = 50) -> list[dict]:
    rows = []
    for step in range(n_steps):
        row = {
            "step": step,
            "train_loss": 5.0 - step * 0.005,
            "lr": 1e-3,
            "grad_norm": 1.0 + (step % 7) * 0.1,
            "tokens_per_s": 1234.5,
            "note": "text is skipped",
            "val_loss": None,
        }
        if step % val_every == 0:
            row["val_loss"] = 5.1 - step * 0.004
            row["val_bpc"] = 2.5 - step * 0.001
        rows.append(row)
    return rows


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
    history = _history()
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


# --------------------------------------------------------------------------- the pyfunc


@pytest.fixture
def tiny_model_files(tmp_path):
    """A random-init tiny GPT, its config.json and a tiny tokenizer trained on a few sentences."""
    torch = pytest.importorskip("torch")
    bpe = pytest.importorskip("lexgpt.tokenizer.bpe", reason="lexgpt.tokenizer.bpe not written yet")
    from lexgpt.modeling.model import GPT, GPTConfig

    tok = bpe.BPETokenizer.train(SENTENCES, 300)
    tok_path = tmp_path / "files" / "tokenizer.json"
    tok_path.parent.mkdir()
    tok.save(tok_path)
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16)
    model = GPT(cfg)
    weights = tmp_path / "files" / "model.pt"
    torch.save(model.state_dict(), weights)
    config = tmp_path / "files" / "config.json"
    config.write_text(json.dumps(cfg.to_dict()))
    return weights, config, tok_path


_FRESH = textwrap.dedent(
    """
    import json
    import mlflow
    m = mlflow.pyfunc.load_model("models:/lexgpt@champion")
    out = m.predict(["What is the meaning of life?", "Hello"], params={"max_new_tokens": 12})
    out_qa = m.predict("What is love?", params={"max_new_tokens": 5, "qa": True})
    import lexgpt
    print(json.dumps({"out": out, "qa": out_qa, "lexgpt": lexgpt.__file__}))
    """
)


def _register(weights, config, tok_path, val_bpc=2.0):
    with runs.start_run("train", tags=LINEAGE) as run:
        info = packaging.log_and_register_model(
            weights, config, tok_path, val_bpc=val_bpc, tags=LINEAGE
        )
    assert info.run_id == run.info.run_id
    assert registry.promote(info.name, info.version, info.val_bpc) == "champion"
    return info


@pytest.mark.parametrize("name_exists, args, says", [
    (False, ["lineage"], "Registered Model with name=lexgpt not found"),
    (False, ["generate", "hi"], "Registered Model with name=lexgpt not found"),
    (True, ["promote", "9"], "Model Version (name=lexgpt, version=9) not found"),
    (True, ["generate", "hi", "--model", "models:/lexgpt@nosuch"], "alias nosuch not found"),
])  # fmt: skip
def test_cli_names_a_missing_model_without_a_traceback(store, name_exists, args, says):
    if name_exists:
        MlflowClient().create_registered_model("lexgpt")  # but no such version or alias
    result = lexgpt_cli(*args, check=False, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    first, hint = result.stderr.strip().splitlines()[-2:]
    assert first.startswith(f"lexgpt {args[0]}: ") and says in first, first
    assert store in hint and "lexgpt run" in hint, hint


def test_pyfunc_log_register_load_predict(store, tmp_path, tiny_model_files):
    # the trained_model asset's flow: a finished training run, then log + register into it
    weights, config, tok_path = tiny_model_files
    run_id = run_artifacts.log_training_run(
        config={"model": json.loads(config.read_text())}, history=_history(20, 10),
        tokenizer_path=tok_path, tags={**LINEAGE, "dagster_run_id": "d1"}, run_name="tiny",
    )
    assert runs.log_metrics_final(run_id, {"final_val_bpc": 2.0, "skip": None}) == 1
    info = packaging.log_and_register_model(
        weights, config, tok_path, val_bpc=2.0, tags={**LINEAGE, "dagster_run_id": "d1"},
        run_id=run_id,
    )
    assert mlflow.active_run() is None
    assert info.run_id == run_id
    assert registry.promote(info.name, info.version, info.val_bpc) == "champion"
    assert info.version == "1"
    assert info.model_uri == "models:/lexgpt/1"

    lin = registry.lineage("models:/lexgpt@champion")
    assert lin["run_id"] == info.run_id
    assert lin["dagster_run_id"] == "d1"
    assert MlflowClient().get_run(run_id).data.metrics["final_val_bpc"] == 2.0
    assert lin["lexgpt.run_id"] == info.run_id
    assert lin["val_bpc"] == 2.0
    for key, value in LINEAGE.items():
        assert lin[f"lexgpt.{key}"] == value
    assert lin["lexgpt.git_commit"]
    json.dumps(lin)  # printable by `lexgpt lineage`

    # the logged model: data only (no code, no pickle), loaded by the installed lexgpt
    local = Path(
        mlflow.artifacts.download_artifacts("models:/lexgpt/1", dst_path=str(tmp_path / "m"))
    )
    mlmodel = (local / "MLmodel").read_text()
    assert "loader_module: lexgpt.tracking.mlflow_model" in mlmodel and "model_code_path" not in mlmodel
    assert not list(local.rglob("*.py")) and not list(local.rglob("*.pkl"))
    reqs = (local / "requirements.txt").read_text()
    assert "torch" in reqs and "mlflow==" in reqs
    assert sorted(p.name for p in (local / "data" / "lexgpt").iterdir()) == [
        "config.json", "model.pt", "tokenizer.json"]

    # in process: every input shape, determinism under a fixed seed
    import pandas as pd

    m = mlflow.pyfunc.load_model("models:/lexgpt@champion")
    params = {"max_new_tokens": 6, "seed": 3}
    a = m.predict(pd.DataFrame({"prompt": ["Hello", "Love"]}), params=params)
    b = m.predict(["Hello", "Love"], params=params)
    assert a == b and len(a) == 2 and all(isinstance(x, str) and x for x in a)
    one = m.predict(
        "What is love?", params={"max_new_tokens": 5, "qa": True, "top_k": 0, "top_p": 0.9}
    )
    assert len(one) == 1 and one[0]
    # an empty prompt starts from <|endoftext|>
    assert m.predict([""], params={"max_new_tokens": 3})[0]

    # `lexgpt generate` streams from the raw GPT + tokenizer
    from lexgpt.generation.generate import generate

    gpt, tok = packaging.load_model_for_generation("models:/lexgpt@champion")
    assert not gpt.training
    ids = list(generate(gpt, tok.encode("Hello"), 4, seed=0, eos_id=tok.eot_id))
    assert len(ids) <= 4

    # evaluation_samples logs a mixed-type table into the (finished) run
    samples = pd.DataFrame({"prompt": ["q"], "completion": ["a"], "tokens": [3], "seed": [0],
                            "temperature": [0.8]})
    run_artifacts.log_samples(samples, run_id=run_id)
    exp_id = MlflowClient().get_run(run_id).info.experiment_id
    table = MlflowClient().load_table(exp_id, run_artifacts.SAMPLES_ARTIFACT, run_ids=[run_id])
    assert table["tokens"].tolist() == [3]


@pytest.mark.slow
def test_pyfunc_loads_in_a_fresh_process_from_the_installed_lexgpt(store, tmp_path, tiny_model_files):
    _register(*tiny_model_files)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    env.pop("LEXGPT_HOME", None)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result["out"]) == 2
    assert all(isinstance(s, str) and s for s in result["out"])
    assert len(result["qa"]) == 1 and result["qa"][0]
    # lexgpt came from the installed package (this checkout), not from the artifact store
    assert result["lexgpt"] == str(REPO / "lexgpt" / "__init__.py")


@pytest.mark.slow
def test_lexgpt_serve_answers_invocations_on_localhost(store, tmp_path, tiny_model_files):
    weights, config, tok_path = tiny_model_files
    _register(weights, config, tok_path, val_bpc=1.0)

    port = free_port()
    # `lexgpt serve` as the README shows it, with a PATH that lacks the venv (no activation)
    cmd = [sys.executable, "-m", "pipelines.cli", "serve", "--port", str(port)]
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if Path(p) != Path(sys.executable).parent)
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            cmd, cwd=REPO, env={**os.environ, "MLFLOW_TRACKING_URI": store, "PATH": path},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log_path.read_text()[-4000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, (
                "server did not come up:\n" + log_path.read_text()[-4000:]
            )
            time.sleep(0.5)
        body = json.dumps(
            {"inputs": ["What is the meaning of life?"], "params": {"max_new_tokens": 8}}
        )
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            answer = json.loads(r.read())
        preds = answer["predictions"]
        assert len(preds) == 1 and isinstance(preds[0], str) and preds[0]
        # a bad param: HTTP 400 with our message, not a generic one
        bad = json.dumps({"inputs": ["hi"], "params": {"max_new_tokens": 10**6}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=bad,
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=60)
        assert err.value.code == 400
        assert "max_new_tokens must be a whole number from 0 to 1024" in err.value.read().decode()
        # a body over the bound: 413 in one line, without reading it all or echoing it
        huge = json.dumps({"inputs": ["x" * (2 << 20)]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=huge,
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=60)
        message = err.value.read().decode()
        assert err.value.code == 413 and "over 1,048,576 bytes" in message and "xxxx" not in message
    finally:
        kill_group(server)


def test_lexgpt_export_gguf_writes_what_llama_cpp_runs(store, tmp_path, tiny_model_files, capsys):
    pytest.importorskip("gguf")
    llama_cpp = pytest.importorskip("llama_cpp")
    import numpy as np
    import torch

    from pipelines.cli import main

    _register(*tiny_model_files)
    out = tmp_path / "lexgpt.gguf"
    assert main(["export", "--format", "gguf", "--dtype", "bf16", "models:/lexgpt@champion", str(out)]) == 0
    assert f"llama-completion -m {out} -c " in capsys.readouterr().out
    assert main(["export", "--format", "gguf", "models:/lexgpt@champion", str(out)]) == 0  # replaces it, f32
    ours, tokenizer = packaging.load_model_for_generation("models:/lexgpt@champion")
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=ours.config.block_size, logits_all=True, n_threads=1,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, verbose=False)
    ids = tokenizer.encode("What is the meaning of life?")
    assert llm.tokenize(b"What is the meaning of life?", add_bos=False, special=False) == ids
    llm.eval(ids)
    with torch.no_grad():
        diff = np.abs(ours(torch.tensor([ids]))[0][0].numpy() - np.asarray(llm.scores[: len(ids)]))
    assert diff.max() <= 1e-3
    # a folder is refused in one line, before the model is loaded
    assert main(["export", "--format", "gguf", "models:/lexgpt@champion", str(tmp_path)]) == 2
    assert "is a folder; --format gguf writes one file" in capsys.readouterr().err


def test_lexgpt_export_writes_what_transformers_loads(store, tmp_path, tiny_model_files, capsys):
    transformers = pytest.importorskip("transformers")
    import torch

    from pipelines.cli import main

    _register(*tiny_model_files)
    assert main(["export", "models:/lexgpt@champion", str(tmp_path / "hf")]) == 0
    assert "from_pretrained" in capsys.readouterr().out
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    ours, _ = packaging.load_model_for_generation("models:/lexgpt@champion")
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        assert (ours(ids)[0] - hf(ids).logits).abs().max().item() <= 1e-4
