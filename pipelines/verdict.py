"""The verdict a refresh prints after it registered a model: per-asset times, the new
version's val bits/char and alias, the champion, the n-gram baseline and a few samples, read
from what Dagster and MLflow recorded (the lines themselves: :mod:`lexgpt.evaluation.report`)."""

from __future__ import annotations


def _latest_metadata(instance, name: str) -> tuple[dict, str | None]:
    """The latest materialization's metadata of asset ``name`` (values unwrapped) and run id."""
    import dagster as dg

    event = instance.get_latest_materialization_event(dg.AssetKey(name))
    if event is None or event.asset_materialization is None:
        return {}, None
    metadata = {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}
    return metadata, event.run_id


def _run_seconds(instance, run_id: str | None) -> float | None:
    import dagster as dg

    if run_id is None:
        return None
    records = instance.get_run_records(filters=dg.RunsFilter(run_ids=[run_id]), limit=1)
    if not records or records[0].start_time is None or records[0].end_time is None:
        return None
    return records[0].end_time - records[0].start_time


def verdict(instance, executed: list[str]) -> list[str]:
    """The lines :func:`lexgpt.evaluation.report.verdict_lines` prints after a refresh that registered a
    model (none otherwise), from what Dagster and MLflow recorded."""
    from lexgpt.evaluation.report import verdict_lines

    if "registered_model" not in executed:
        return []
    times = []
    for name in executed:
        seconds = _run_seconds(instance, _latest_metadata(instance, name)[1])
        if seconds is not None:
            times.append((name, seconds))
    model, _ = _latest_metadata(instance, "registered_model")
    version, bpc, alias = model.get("registered_version"), model.get("val_bpc"), model.get("alias")
    champion = None
    if model.get("previous_champion_version"):
        champion = (str(model["previous_champion_version"]), model.get("previous_champion_val_bpc"))
    if alias == "challenger":  # compared with the champion that stays
        try:
            from lexgpt.tracking import registry, runs

            runs.configure()
            current = registry.version_by_alias("lexgpt", registry.CHAMPION)
            if current is not None:  # its score as compared: re-scored like the new model, if it was
                same = str(current.version) == str(model.get("previous_champion_version"))
                rescored = model.get("previous_champion_val_bpc_on_this_val") if same else None
                champion = (str(current.version), rescored if rescored is not None else registry.version_val_bpc(current))
        except Exception:  # noqa: BLE001 - the verdict never fails a refresh that worked
            pass
    baseline = model.get("ngram_val_bpc") if model.get("ngram_comparable", True) else None
    trained, _ = _latest_metadata(instance, "trained_model")
    samples = []
    if "evaluation_samples" in executed:
        table = _latest_metadata(instance, "evaluation_samples")[0].get("samples")
        for record in (getattr(table, "records", None) or [])[:3]:
            data = record.data
            samples.append((str(data.get("question", "")), str(data.get("answer", ""))))
    return verdict_lines(times=times, new=(str(version), float(bpc)) if version and bpc is not None else None,
                         alias=alias, champion=champion,
                         baseline_bpc=float(baseline) if isinstance(baseline, (int, float)) else None,
                         baseline_stale=model.get("ngram_comparable") is False,
                         samples=samples, train_minutes=trained.get("train_minutes"),
                         budget_minutes=trained.get("budget_minutes"))
