"""A throw-away MLflow store and a tiny registered model, shared by the tracking tests.

Imported by the test modules that need them (``from mlflow_store import store, ...``):
pytest finds fixtures by name in the importing module.
"""

from __future__ import annotations

import json

import mlflow
import pytest

from lexgpt.tracking import packaging, registry, runs

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


def history_rows(n_steps: int = 600, val_every: int = 50) -> list[dict]:
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


def register_champion(weights, config, tok_path, val_bpc=2.0):
    """Log and register the files as a model version and make it champion; its ModelInfo."""
    with runs.start_run("train", tags=LINEAGE) as run:
        info = packaging.log_and_register_model(
            weights, config, tok_path, val_bpc=val_bpc, tags=LINEAGE
        )
    assert info.run_id == run.info.run_id
    assert registry.promote(info.name, info.version, info.val_bpc) == "champion"
    return info
