"""Registry policy: the champion gate, manual promotion, and where a version came from.

Every trained model is a new version of ``lexgpt`` in the MLflow model registry, tagged
with its ``val_bpc``. The alias ``champion`` moves to a new version only if it is strictly
better (lower val bits per character, at the 4 decimals scores are shown with); otherwise
the version becomes ``challenger``::

    registry.promote("lexgpt", "3", 1.71)    # -> "champion" or "challenger"
    registry.set_alias("lexgpt", "champion", "2")   # roll back by hand
    registry.lineage("models:/lexgpt@champion")     # data versions, rules hash, commit ...

>>> parse_models_uri("models:/lexgpt@champion"), parse_models_uri("models:/lexgpt/3")
(('lexgpt', None, 'champion'), ('lexgpt', '3', None))
"""

from __future__ import annotations

import logging
import math
from typing import Any

from mlflow.exceptions import MlflowException

from lexgpt.tracking.runs import LINEAGE_KEYS, RUN_ID_TAG, VAL_BPC_TAG, client, ensure_configured

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
SCORE_DECIMALS = 4


def version_val_bpc(mv) -> float | None:
    """A model version's ``val_bpc`` tag as a finite float (None when absent or bad)."""
    raw = (mv.tags or {}).get(VAL_BPC_TAG)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def set_alias(name: str, alias: str, version: int | str) -> None:
    """Point ``name@alias`` at ``version`` (manual promote / rollback)."""
    ensure_configured()
    client().set_registered_model_alias(name, alias, str(version))


def version_by_alias(name: str, alias: str):
    """The model version ``name@alias`` points at, or None when there is none."""
    ensure_configured()
    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        return None


def _lower(a: float, b: float) -> bool:
    """``a`` beats ``b`` at the precision scores are shown with (4 decimals): a gap too small to
    show is a tie, and a tie does not win."""
    return round(a, SCORE_DECIMALS) < round(b, SCORE_DECIMALS)


def promote(registered_name: str, version: int | str, val_bpc: float, champion_val_bpc: float | None = None,
            baseline_bpc: float | None = None) -> str:
    """Champion gate. ``champion`` moves to ``version`` only if ``val_bpc`` is lower, at 4
    decimals, than ``baseline_bpc`` (the count-based bar, when known: a model that loses to
    counting is never champion) and than the current champion's: ``champion_val_bpc`` when
    given (the champion re-scored as the new model was, see
    ``lexgpt.evaluation.loss_eval.score_texts``), else its ``val_bpc`` tag; otherwise ``version``
    becomes ``challenger`` (:func:`hold_back`). A champion without a readable score is beaten by
    any finite score; a non-finite ``val_bpc`` never wins. Returns ``"champion"`` or ``"challenger"``."""
    version = str(version)
    val_bpc = float(val_bpc)
    current = version_by_alias(registered_name, CHAMPION)
    beats_counting = baseline_bpc is None or not math.isfinite(baseline_bpc) or _lower(val_bpc, baseline_bpc)
    if current is not None and str(current.version) == version:
        return CHAMPION  # made champion earlier: a re-run of the gate does not demote it
    if not (math.isfinite(val_bpc) and beats_counting):
        return hold_back(registered_name, version)
    best = None if current is None else version_val_bpc(current)
    if champion_val_bpc is not None and math.isfinite(champion_val_bpc):
        best = float(champion_val_bpc)
    if current is not None and best is None:
        log.warning("%s@%s (v%s) has no val_bpc tag; the new version replaces it",
                    registered_name, CHAMPION, current.version)
    if best is not None and not _lower(val_bpc, best):
        return hold_back(registered_name, version)
    client().set_registered_model_alias(registered_name, CHAMPION, version)
    if current is not None:
        log.info("%s: champion v%s -> v%s (val_bpc %s)", registered_name, current.version, version, val_bpc)
    return CHAMPION


def hold_back(registered_name: str, version: int | str) -> str:
    """``version`` becomes ``challenger`` (a later ``lexgpt promote`` can still crown it),
    unless it is the champion already: a re-run of the gate never demotes. Returns the alias."""
    version = str(version)
    current = version_by_alias(registered_name, CHAMPION)
    if current is not None and str(current.version) == version:
        return CHAMPION
    client().set_registered_model_alias(registered_name, CHALLENGER, version)
    return CHALLENGER


def parse_models_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name@alias`` / ``models:/name/3`` / ``models:/name/latest`` ->
    ``(name, version, alias)``."""
    if not model_uri.startswith("models:/"):
        raise ValueError(f"expected a models:/ URI, got {model_uri!r}")
    rest = model_uri[len("models:/") :].strip("/")
    if "@" in rest:
        name, alias = rest.rsplit("@", 1)
        return name, None, alias
    if "/" in rest:
        name, version = rest.rsplit("/", 1)
        return name, version, None
    raise ValueError(f"{model_uri!r} names no version or alias (models:/NAME/VERSION or @ALIAS)")


def get_model_version(model_uri: str):
    """The registry entry a ``models:/`` URI names (alias, number or ``latest``)."""
    ensure_configured()
    mlflow_client = client()
    name, version, alias = parse_models_uri(model_uri)
    if alias is not None:
        return mlflow_client.get_model_version_by_alias(name, alias)
    if version.lower() == "latest":
        versions = mlflow_client.search_model_versions(
            f"name = '{name}'", order_by=["version_number DESC"], max_results=1
        )
        if not versions:
            raise MlflowException(
                f"registered model {name!r} has no versions", error_code="RESOURCE_DOES_NOT_EXIST"
            )
        return versions[0]
    return mlflow_client.get_model_version(name, version)


def lineage(model_uri: str) -> dict[str, Any]:
    """Where a registered version came from: its tags (corpus / vocab / shards versions,
    rules hash, git commit, run id, val_bpc) plus name, version, aliases, run id, source."""
    mv = get_model_version(model_uri)
    tags = dict(mv.tags or {})
    out: dict[str, Any] = {
        "model_uri": model_uri,
        "name": mv.name,
        "version": str(mv.version),
        "aliases": sorted(getattr(mv, "aliases", None) or []),
        "run_id": mv.run_id or tags.get(RUN_ID_TAG),
        "source": mv.source,
        "val_bpc": version_val_bpc(mv),
    }
    for key in LINEAGE_KEYS:
        out.setdefault(key, tags.get(key))
    for key, value in sorted(tags.items()):
        if key != VAL_BPC_TAG:
            out[key] = value
    return out
