"""The champion gate's evidence: which alias a version gets, when the champion is re-scored
first, and which check results let weights be registered at all."""

from __future__ import annotations

import logging

import dagster as dg
import pytest
import torch
from mlflow import MlflowClient

from lexgpt.tracking import packaging, registry, runs
from mlflow_store import LINEAGE, SENTENCES, store, tiny_model_files  # noqa: F401 - fixtures
from pipelines.assets.registered_model import _rescored_champion
from pipelines.lake import blocking_check_refusal, failed_blocking_check
from test_tracking import _fake_version


def test_a_win_must_show_at_four_decimals(store, tmp_path):
    client = MlflowClient()
    tie = _fake_version(client, tmp_path, "lexgpt", 1.47194)
    # 1.47194 against the 5-gram's 1.47192: both read 1.4719, so it does not beat counting.
    assert registry.promote("lexgpt", tie, 1.47194, baseline_bpc=1.47192) == "challenger"
    win = _fake_version(client, tmp_path, "lexgpt", 1.4718)
    assert registry.promote("lexgpt", win, 1.4718, baseline_bpc=1.47192) == "champion"
    loses_to_counting = _fake_version(client, tmp_path, "lexgpt", 1.0)
    assert registry.promote("lexgpt", loses_to_counting, 1.0, baseline_bpc=0.9) == "challenger"
    shown_tie = _fake_version(client, tmp_path, "lexgpt", 1.46804)
    assert registry.promote("lexgpt", shown_tie, 1.46804, champion_val_bpc=1.468, baseline_bpc=1.5) == "challenger"
    assert str(registry.version_by_alias("lexgpt", "champion").version) == win


def test_hold_back_never_demotes_the_champion(store, tmp_path):
    client = MlflowClient()
    v1 = _fake_version(client, tmp_path, "lexgpt", 2.0)
    assert registry.promote("lexgpt", v1, 2.0) == "champion"
    assert registry.hold_back("lexgpt", v1) == "champion"  # a re-run of the gate on the same weights
    v2 = _fake_version(client, tmp_path, "lexgpt", 1.0)
    assert registry.hold_back("lexgpt", v2) == "challenger"
    assert str(registry.version_by_alias("lexgpt", "challenger").version) == v2
    assert str(registry.version_by_alias("lexgpt", "champion").version) == v1


def _register(files, tags: dict) -> object:
    """Register the files as champion, their weights perturbed (zero-initialised layers would
    make every score uniform, at any precision)."""
    weights, config, tok = files
    state = torch.load(weights, weights_only=True)
    torch.manual_seed(0)
    torch.save({k: v + torch.randn_like(v) * 0.3 for k, v in state.items()}, weights)
    with runs.start_run("train", tags=LINEAGE):
        info = packaging.log_and_register_model(weights, config, tok, val_bpc=3.0, tags={**LINEAGE, **tags})
    assert registry.promote(info.name, info.version, info.val_bpc) == "champion"
    return registry.version_by_alias("lexgpt", "champion")


def test_the_champion_is_rescored_when_its_score_was_measured_otherwise(store, tiny_model_files):
    measured = {"val_text_sha256": "text-1", "scoring_version": "code-1", "val_dtype": "float32"}
    champion = _register(tiny_model_files, measured)
    log = logging.getLogger("test")
    texts = SENTENCES[:5]
    assert _rescored_champion(champion, measured, texts, "lexgpt", log) is None  # like with like already
    other_code = _rescored_champion(champion, {**measured, "scoring_version": "code-2"}, texts, "lexgpt", log)
    other_text = _rescored_champion(champion, {**measured, "val_text_sha256": "text-2"}, texts, "lexgpt", log)
    assert other_code == other_text and 0 < other_code < 20
    # At the new model's precision: bf16 autocast moves a random model's bits/char a little.
    in_bf16 = _rescored_champion(champion, {**measured, "val_dtype": "bfloat16"}, texts, "lexgpt", log)
    assert in_bf16 == pytest.approx(other_code, rel=0.05) and in_bf16 != other_code


# --- the blocking check, on a toy asset: registered only after it passed on the latest weights
OUTCOME = {"passed": True}


@dg.asset
def weights():
    return dg.MaterializeResult()


@dg.asset_check(asset=weights, blocking=True)
def bound(context):
    return dg.AssetCheckResult(passed=OUTCOME["passed"], description="val_bpc 3.1 > 2.5")


def _run(instance, selection, passed: bool = True) -> None:
    OUTCOME["passed"] = passed
    dg.materialize([weights, bound], instance=instance, selection=selection, raise_on_error=False)


def test_only_a_pass_on_the_latest_materialization_lets_weights_through():
    key = bound.check_key
    with dg.DagsterInstance.ephemeral() as instance:
        asset_and_check, asset_alone = dg.AssetSelection.all(), dg.AssetSelection.assets(weights).without_checks()
        check_alone = dg.AssetSelection.checks(bound)

        _run(instance, asset_and_check, passed=False)
        assert failed_blocking_check(instance, key) == "val_bpc 3.1 > 2.5"
        assert blocking_check_refusal(instance, key) == "failed bound (val_bpc 3.1 > 2.5)"

        _run(instance, check_alone, passed=False)  # run again alone (the UI's Checks tab): still failed
        assert blocking_check_refusal(instance, key).startswith("failed bound")

        _run(instance, check_alone, passed=True)  # passes on the same weights now
        assert failed_blocking_check(instance, key) is None and blocking_check_refusal(instance, key) is None

        _run(instance, asset_alone)  # new weights, check deselected: nothing vouches for them
        assert failed_blocking_check(instance, key) is None
        assert "has not passed bound on its latest materialization" in blocking_check_refusal(instance, key)

        _run(instance, asset_and_check, passed=True)
        assert blocking_check_refusal(instance, key) is None


def test_the_verdict_says_when_counting_could_not_be_compared():
    from lexgpt.evaluation.report import verdict_lines

    lines = verdict_lines(times=[("registered_model", 1.0)], new=("2", 1.4), alias="challenger", champion=None,
                          baseline_stale=True)
    stale = [line for line in lines if "n-gram baseline" in line]
    assert len(stale) == 1 and "other token shards" in stale[0] and "materialize ngram_baseline" in stale[0]
    assert not any("n-gram" in line for line in verdict_lines(times=[], new=("2", 1.4), alias="champion",
                                                                champion=None))


# --- weights that are not what trained_model recorded, or older than the lake's shards or scoring code
def test_weights_are_registered_only_as_trained_model_recorded_them(tmp_path):
    from types import SimpleNamespace

    from lexgpt.infra.hashing import sha256_file
    from pipelines.assets.registered_model import NotRegistered, _refuse_stale_weights
    from pipelines.assets.trained_model import SCORING_CODE_VERSION
    from pipelines.lake import DATA_VERSION_TAG, INPUT_VERSION_TAG
    from pipelines.lake_layout import LakeLayout

    layout = LakeLayout(tmp_path)
    weights_file = layout.model_weights_file()
    weights_file.parent.mkdir(parents=True)
    weights_file.write_bytes(b"weights")
    recorded = {"weights_sha256": sha256_file(weights_file), "scoring_version": SCORING_CODE_VERSION}
    with dg.DagsterInstance.ephemeral() as instance:
        context = SimpleNamespace(instance=instance)

        def made(asset: str, tags: dict) -> None:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset, tags=tags))

        made("token_shards", {DATA_VERSION_TAG: "shards-1"})
        made("trained_model", {DATA_VERSION_TAG: "w-1", INPUT_VERSION_TAG + "token_shards": "shards-1"})
        _refuse_stale_weights(context, layout, recorded)  # as recorded: registered

        with pytest.raises(NotRegistered, match="other scoring code"):
            _refuse_stale_weights(context, layout, {**recorded, "scoring_version": "older"})
        weights_file.write_bytes(b"weights, rewritten by a run that never finished")
        with pytest.raises(NotRegistered, match="model.pt is not the file trained_model recorded"):
            _refuse_stale_weights(context, layout, recorded)
        weights_file.write_bytes(b"weights")
        made("token_shards", {DATA_VERSION_TAG: "shards-2"})  # new shards, the model not retrained yet
        with pytest.raises(NotRegistered, match="trained on other token shards"):
            _refuse_stale_weights(context, layout, recorded)
