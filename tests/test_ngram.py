"""The Kneser-Ney n-gram baseline: the model, its asset, the check against the GPT, the bench."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from conftest import REPO, WORDS
from lexgpt.data import shards
from lexgpt.evaluation import ngram
from lexgpt.evaluation.ngram import KneserNey
from lexgpt.tokenizer.bpe import BPETokenizer


def zipf_tokens(n: int, vocab: int, seed: int) -> np.ndarray:
    """A skewed stream with some local structure (each token tends to repeat its neighbour's pattern)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab + 1)
    t = rng.choice(vocab, size=n, p=weights / weights.sum())
    copy = rng.random(n) < 0.3
    t[3:][copy[3:]] = t[:-3][copy[3:]]  # a token 3 back predicts the next one
    return t.astype(np.uint16)


# ------------------------------------------------------------ pure-Python reference
def reference_discounts(counts: Counter) -> list[float]:
    n = Counter(c for c in counts.values() if c > 0)
    n1, n2, n3, n4 = n[1], n[2], n[3], n[4]
    if n1 and n2 and n3:
        y = n1 / (n1 + 2 * n2)
        d = [1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3]
        if all(0 < d[r - 1] <= r for r in (1, 2, 3)):
            return [0.0, *d]
    return [0.0, 0.5, 1.0, 1.5]


class ReferenceKN:
    """Chen & Goodman's interpolated modified Kneser-Ney, written as directly as possible."""

    def __init__(self, tokens: list[int], vocab_size: int, order: int):
        self.V, self.order = vocab_size, order
        grams = {k: Counter(tuple(tokens[i : i + k]) for i in range(len(tokens) - k + 1))
                 for k in range(1, order + 1)}  # fmt: skip
        self.counts = {order: grams[order]}
        for k in range(1, order):  # continuation count: distinct tokens seen before the k-gram
            self.counts[k] = Counter(g[1:] for g in grams[k + 1])
        self.discounts = {k: reference_discounts(c) for k, c in self.counts.items()}

    def prob(self, w: int, context: list[int]) -> float:
        context = context[len(context) - (self.order - 1) :] if self.order > 1 else []
        p = 1.0 / self.V
        for k in range(1, len(context) + 2):
            h = tuple(context[len(context) - (k - 1) :]) if k > 1 else ()
            followers = {g[-1]: c for g, c in self.counts[k].items() if g[:-1] == h and c > 0}
            total = sum(followers.values())
            if total == 0:
                continue
            d = self.discounts[k]
            gamma = sum(d[min(c, 3)] for c in followers.values()) / total
            c = followers.get(w, 0)
            p = (c - d[min(c, 3)]) / total + gamma * p
        return p


# ------------------------------------------------------------------------ the model
def test_distributions_sum_to_one():
    train = zipf_tokens(5000, 40, seed=1)
    lm = KneserNey.fit(train, vocab_size=50, order=4)  # ids 40..49 never occur in train
    contexts = [[], train[:1].tolist(), train[100:103].tolist(), train[7:17].tolist(),
                [49], [3, 49, 2], [49, 49, 49], [int(train[-1])]]  # fmt: skip
    for ctx in contexts:
        p = lm.distribution(ctx)
        assert p.shape == (50,)
        assert abs(p.sum() - 1.0) < 1e-12, (ctx, p.sum())
        assert p.min() > 0, ctx


def test_matches_the_pure_python_reference():
    train = zipf_tokens(3000, 12, seed=2).tolist()
    held_out = zipf_tokens(60, 14, seed=3).tolist()  # 12, 13: never seen in train
    lm, ref = KneserNey.fit(train, 14, order=3), ReferenceKN(train, 14, order=3)
    assert any(r != [0.0, 0.5, 1.0, 1.5] for r in ref.discounts.values())  # the formula, not just the fallback
    for k, o in enumerate(lm.orders, start=1):
        assert o.discounts.tolist() == pytest.approx(ref.discounts[k], abs=1e-12)
    expected = [math.log(ref.prob(w, held_out[:i])) for i, w in enumerate(held_out)]
    assert lm.log_probs(held_out).tolist() == pytest.approx(expected, abs=1e-10)
    for ctx in ([], [1], [0, 1], [13, 0], [5, 5, 5, 5]):
        assert lm.distribution(ctx).tolist() == pytest.approx([ref.prob(w, ctx) for w in range(14)], abs=1e-12)
    # The two scoring paths agree with each other too.
    dist = [lm.distribution(held_out[max(0, i - 2) : i])[w] for i, w in enumerate(held_out)]
    assert np.log(dist).tolist() == pytest.approx(lm.log_probs(held_out).tolist(), abs=1e-12)


def test_order_one_is_a_discounted_unigram_mixed_with_uniform():
    train = zipf_tokens(2000, 30, seed=4)
    lm = KneserNey.fit(train, vocab_size=32, order=1)
    counts = np.bincount(train, minlength=32)
    d = ngram.modified_kn_discounts(counts)
    discounted = np.where(counts > 0, counts - d[np.minimum(counts, 3)], 0.0)
    left_for_uniform = d[np.minimum(counts, 3)][counts > 0].sum()
    expected = discounted / counts.sum() + left_for_uniform / counts.sum() / 32
    assert lm.distribution([]) == pytest.approx(expected, abs=1e-15)
    assert lm.distribution([1, 2, 3]) == pytest.approx(expected, abs=1e-15)  # order 1 ignores context
    assert np.exp(lm.log_probs([5, 0, 31])) == pytest.approx(expected[[5, 0, 31]], abs=1e-15)


def test_longer_contexts_help_on_a_repetitive_corpus():
    # After 0 comes 1, 2 or 3, decided by the token before the 0: only order >= 3 sees that.
    rng = random.Random(0)
    pattern = [0, 1, 0, 2, 0, 3]
    train = [t if rng.random() > 0.02 else rng.randrange(4) for _ in range(500) for t in pattern]
    held_out = pattern * 20
    nats = {n: -KneserNey.fit(train, 4, order=n).log_probs(held_out).sum() for n in (1, 2, 3)}
    assert nats[1] > 2 * nats[2] > 4 * nats[3], nats
    assert nats[3] / len(held_out) < 0.2  # nearly deterministic once the context is long enough


def test_unseen_tokens_and_contexts_get_a_finite_loss():
    lm = KneserNey.fit([1, 2, 3, 1, 2, 3], vocab_size=10, order=5)
    lp = lm.log_probs([9, 8, 1, 2, 9, 3])
    assert np.isfinite(lp).all()
    assert lp[0] < lp[2]  # a never-seen token costs more than a seen one


def test_tiny_and_malformed_input(monkeypatch):
    lm = KneserNey.fit([7], vocab_size=8, order=3)  # shorter than the order: still a distribution
    assert abs(lm.distribution([7, 7]).sum() - 1) < 1e-12
    assert lm.log_probs([]).shape == (0,)
    with pytest.raises(ValueError, match=r"token id 8 outside the vocabulary \[0, 8\)"):
        KneserNey.fit([1, 8], vocab_size=8)
    with pytest.raises(ValueError, match="token id -1"):
        lm.log_probs([0, -1])
    with pytest.raises(ValueError, match="no tokens"):
        KneserNey.fit([], vocab_size=8)
    with pytest.raises(ValueError, match="order must be >= 1"):
        KneserNey.fit([1, 2], vocab_size=8, order=0)
    monkeypatch.setattr(ngram, "MAX_FIT_TOKENS", 5)  # memory grows with the shard: bounded
    with pytest.raises(ValueError, match="10 train tokens is more than the n-gram baseline fits"):
        KneserNey.fit(list(range(8)) + [0, 1], vocab_size=8)


def test_both_ways_of_counting_agree(monkeypatch):
    # Keys packed with their positions (the fast path) and plain np.unique give one model.
    train, val = zipf_tokens(3000, 20, seed=7), zipf_tokens(300, 20, seed=8)
    packed = KneserNey.fit(train, 20, order=4).log_probs(val)
    monkeypatch.setattr(ngram, "_PACK_BITS", 0)
    assert KneserNey.fit(train, 20, order=4).log_probs(val).tolist() == packed.tolist()


def test_chunked_scoring_equals_scoring_at_once(monkeypatch):
    train, val = zipf_tokens(4000, 30, seed=5), zipf_tokens(1000, 30, seed=6)
    lm = KneserNey.fit(train, 30, order=4)
    chars = np.arange(30) % 4
    whole = -lm.log_probs(val).sum()
    monkeypatch.setattr(ngram, "SCORE_CHUNK", 37)
    nats, targets, n_chars = ngram.score(lm, val, chars)
    assert nats == pytest.approx(whole, rel=1e-12)
    assert (targets, n_chars) == (1000, chars[val].sum())


# --------------------------------------------------------------------- real shards
def write_lake(lake: Path, n_episodes: int = 6) -> BPETokenizer:
    """A tokenizer and token shards in the lake's layout, from synthetic episodes."""
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(400)) for _ in range(n_episodes)]
    tokenizer = BPETokenizer.train(texts, 300, workers=1)
    tokenizer.save(lake / "bpe_vocab" / "tokenizer.json")
    shards.write_shards([1, 2, 3, 4, 5, 20][:n_episodes], texts, tokenizer, lake / "token_shards", workers=1)
    return tokenizer


def test_baseline_from_shards_scores_every_val_token(tmp_path):
    tokenizer = write_lake(tmp_path)
    folder = tmp_path / "token_shards"
    score = ngram.baseline_from_shards(folder, tokenizer.token_char_counts(), order=3)
    val = shards.open_shard(folder / "val.bin")
    manifest = shards.read_manifest(folder)
    assert score.val_tokens == len(val) == manifest["splits"]["val"]["tokens"]
    assert score.val_chars == manifest["splits"]["val"]["chars"]  # every target, <|endoftext|> counts 0
    lm = KneserNey.fit(shards.open_shard(folder / "train.bin"), tokenizer.vocab_size, order=3)
    assert score.val_nats == pytest.approx(-lm.log_probs(val).sum(), rel=1e-12)
    assert score.val_bpc == pytest.approx(score.val_nats / math.log(2) / score.val_chars)

    v = tokenizer.vocab_size
    with pytest.raises(ValueError, match=f"shards were made with vocab {v} but the tokenizer has {v - 1}"):
        ngram.baseline_from_shards(folder, tokenizer.token_char_counts()[:-1])
    np.array([5, 400], dtype="<u2").tofile(folder / "val.bin")
    with pytest.raises(ValueError, match=r"val\.bin: token id 400 outside the vocabulary"):
        ngram.baseline_from_shards(folder, tokenizer.token_char_counts())


# ------------------------------------------------------------------ Dagster asset
def _fake(name: str, *, version: str = "", val_bpc: float | None = None, deps=()):
    """A stand-in for an upstream asset (same key) so the test needs no training."""

    @dg.asset(name=name, deps=list(deps))
    def stand_in() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={} if val_bpc is None else {"val_bpc": val_bpc},
                                    data_version=dg.DataVersion(version or "v"))

    return stand_in


def _check(result) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "beats_ngram_baseline"]
    return evaluation


def test_ngram_baseline_asset_and_the_check_against_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / ".dagster"))
    from pipelines.assets.ngram_baseline import beats_ngram_baseline, ngram_baseline
    from pipelines.resources import DataLake

    lake = tmp_path / "lake"
    tokenizer = write_lake(lake)
    resources = {"lake": DataLake(root=str(lake))}
    shards_v1 = _fake("token_shards", version="shards-1")
    expected = ngram.baseline_from_shards(lake / "token_shards", tokenizer.token_char_counts(), order=5)

    with dg.instance_for_test() as instance:
        def run(*assets):
            return dg.materialize(list(assets), instance=instance, resources=resources)

        first = run(shards_v1, _fake("bpe_vocab"), ngram_baseline)
        (mat,) = [m for m in first.asset_materializations_for_node("ngram_baseline")]
        meta = {k: v.value for k, v in mat.metadata.items()}
        assert meta["val_bpc"] == round(expected.val_bpc, 4)
        assert meta["val_loss"] == round(expected.val_loss, 4)
        assert (meta["order"], meta["val_tokens"], meta["val_chars"]) == (5, expected.val_tokens, expected.val_chars)
        assert meta["fit_seconds"] >= 0 and meta["score_seconds"] >= 0
        saved = json.loads((lake / "ngram_baseline" / "result.json").read_text())
        assert saved["val_bpc"] == pytest.approx(expected.val_bpc) and "fit_seconds" not in saved
        assert (lake / "ngram_baseline" / "lineage.json").exists()
        second = run(ngram_baseline)  # same inputs: same bytes, same data version
        assert _data_version(second, "ngram_baseline") == _data_version(first, "ngram_baseline")

        # A model that loses to counting: the check warns (and does not block), with both numbers.
        lost = _check(run(_fake("trained_model", val_bpc=9.0, deps=["token_shards"]), beats_ngram_baseline))
        assert not lost.passed and lost.severity == dg.AssetCheckSeverity.WARN
        assert lost.metadata["model_val_bpc"].value == 9.0
        assert lost.metadata["ngram_val_bpc"].value == meta["val_bpc"]

        won = _check(run(_fake("trained_model", val_bpc=0.5, deps=["token_shards"]), beats_ngram_baseline))
        assert won.passed and won.metadata["margin_bpc"].value == pytest.approx(meta["val_bpc"] - 0.5, abs=1e-4)

        # New shards since the baseline: the numbers are not comparable, and the check says so.
        run(_fake("token_shards", version="shards-2"))
        stale = _check(run(_fake("trained_model", val_bpc=0.5, deps=["token_shards"]), beats_ngram_baseline))
        assert not stale.passed and "different token shards" in stale.description


def _data_version(result, node: str) -> str:
    (mat,) = result.asset_materializations_for_node(node)
    return mat.tags["dagster/data_version"]


def test_check_without_a_baseline_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / ".dagster"))
    from pipelines.assets.ngram_baseline import beats_ngram_baseline

    with dg.instance_for_test() as instance:
        result = dg.materialize([_fake("trained_model", val_bpc=1.0), beats_ngram_baseline], instance=instance)
        evaluation = _check(result)
        assert not evaluation.passed and "ngram_baseline" in evaluation.description


def test_the_pipeline_registers_the_baseline_and_its_check(lexgpt_home):
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    assert dg.AssetKey("ngram_baseline") in graph.materializable_asset_keys
    assert dg.AssetCheckKey(dg.AssetKey("trained_model"), "beats_ngram_baseline") in graph.asset_check_keys
    # `lexgpt refresh` walks assets in this order: the baseline exists before the model's check runs.
    order = graph.toposorted_asset_keys
    assert order.index(dg.AssetKey("ngram_baseline")) < order.index(dg.AssetKey("trained_model"))


# ------------------------------------------------------------------------- bench
def test_bench_reports_each_order(tmp_path):
    tokenizer = write_lake(tmp_path)
    proc = subprocess.run(
        [sys.executable, "bench/ngram.py", "--shards", str(tmp_path / "token_shards"),
         "--tokenizer", str(tmp_path / "bpe_vocab" / "tokenizer.json"), "--orders", "2", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    reports = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["order"] for r in reports] == [2, 3]
    assert all(r["vocab_size"] == tokenizer.vocab_size and r["val_bpc"] > 0 and r["fit_seconds"] >= 0
               for r in reports)  # fmt: skip
