"""Same inputs, two separate homes: byte-identical corpus, tokenizer and shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import REPO, TINY_CONFIG, lexgpt_cli, use_home
from lexgpt.infra.hashing import sha256_file

STAGES = ["raw_subtitles", "cleaned_corpus", "bpe_vocab", "token_shards"]


def _data_versions(home: Path) -> dict[str, str]:
    import dagster as dg

    from pipelines.lake import latest_data_version

    with dg.DagsterInstance.from_config(str(home / ".dagster")) as instance:
        return {name: latest_data_version(instance, dg.AssetKey(name)) for name in STAGES}


def _fingerprint(home: Path) -> dict:
    lake = home / "data_lake"
    corpus_lineage = json.loads((lake / "cleaned_corpus" / "lineage.json").read_text())
    shards_dir = lake / "token_shards"
    return {
        "corpus_content_sha256": corpus_lineage["content_sha256"],
        "cues.parquet": sha256_file(lake / "raw_subtitles" / "cues.parquet"),
        "corpus.parquet": sha256_file(lake / "cleaned_corpus" / "corpus.parquet"),
        "tokenizer.json": (lake / "bpe_vocab" / "tokenizer.json").read_bytes(),
        "shards": {p.name: sha256_file(p) for p in sorted(shards_dir.iterdir())
                   if p.is_file() and p.name != "lineage.json"},
        "manifest": json.loads((shards_dir / "manifest.json").read_text()),
    }


def test_data_and_token_stages_are_reproducible(tmp_path: Path, small_lexicap: Path, monkeypatch):
    rules = tmp_path / "cleaning_rules.toml"
    shutil.copyfile(REPO / "lexgpt" / "data" / "cleaning_rules.toml", rules)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)

    prints = {}
    for name in ("a", "b"):
        home = tmp_path / f"home_{name}"
        use_home(monkeypatch, home, small_lexicap, rules)
        out = lexgpt_cli("refresh", "--only", *STAGES, "--config", str(config), "--json").stdout
        report = json.loads(out.strip().splitlines()[-1])
        assert report["executed"] == STAGES, out
        prints[name] = (_fingerprint(home), _data_versions(home))

    (a, versions_a), (b, versions_b) = prints["a"], prints["b"]
    assert a["corpus_content_sha256"] == b["corpus_content_sha256"]
    assert a["cues.parquet"] == b["cues.parquet"]
    assert a["corpus.parquet"] == b["corpus.parquet"]
    assert a["tokenizer.json"] == b["tokenizer.json"]
    assert set(a["shards"]) >= {"train.bin", "val.bin", "manifest.json"}
    assert a["shards"] == b["shards"]
    assert a["manifest"] == b["manifest"]
    # The manifest's own hashes describe the files next to it.
    for split in ("train", "val"):
        info = a["manifest"]["splits"][split]
        assert a["shards"][info["file"]] == info["sha256"]
    # ... and Dagster, in each home, recorded the same data versions.
    assert all(versions_a.values()) and versions_a == versions_b
    # Nothing in the artifacts depends on where the home is.
    for home in (tmp_path / "home_a", tmp_path / "home_b"):
        for path in (home / "data_lake").rglob("*"):
            if path.is_file() and path.name != "lineage.json":
                assert str(home).encode() not in path.read_bytes(), path
