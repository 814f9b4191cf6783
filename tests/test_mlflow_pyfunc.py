"""The logged model: MLflow's pyfunc (log, register, load, predict), in a fresh process, served
on localhost, and exported (GGUF, transformers) from the registry."""

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
from mlflow_store import (LINEAGE, history_rows, register_champion, store,  # noqa: F401 - fixtures
                          tiny_model_files)

REPO = Path(__file__).resolve().parents[1]

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
        config={"model": json.loads(config.read_text())}, history=history_rows(20, 10),
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
    register_champion(*tiny_model_files)
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
    register_champion(weights, config, tok_path, val_bpc=1.0)

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
        # a body over the bound: 413 in one line, the body dropped as it comes (never held), not echoed
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

    register_champion(*tiny_model_files)
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

    register_champion(*tiny_model_files)
    assert main(["export", "models:/lexgpt@champion", str(tmp_path / "hf")]) == 0
    assert "from_pretrained" in capsys.readouterr().out
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    ours, _ = packaging.load_model_for_generation("models:/lexgpt@champion")
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        assert (ours(ids)[0] - hf(ids).logits).abs().max().item() <= 1e-4
