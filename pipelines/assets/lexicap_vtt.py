"""The source: the Lexicap WebVTT files, observed and versioned by their content."""

import warnings

import dagster as dg

from pipelines.assets.shared import DATA_GROUP
from pipelines.automation import observe_condition
from pipelines.resources import LexicapSource


def lexicap_vtt(source: LexicapSource) -> dg.DataVersion:
    return dg.DataVersion(source.data_version())


# observable_source_asset is Dagster's way to version an external source. It is marked
# beta; its warning is silenced for this one call (no global filter at import).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*observable_source_asset.*")
    lexicap_vtt = dg.observable_source_asset(
        group_name=DATA_GROUP,
        description="The Lexicap WebVTT caption files (a local folder, LEXICAP_DIR, or data.zip). "
        "Versioned by content: a changed or added file makes raw_subtitles stale.",
        owners=["team:data"],
        tags={"kind": "vtt"},
        automation_condition=observe_condition(),  # observed by automation, see pipelines/automation.py
    )(lexicap_vtt)
