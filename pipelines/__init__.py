"""The Dagster layer: thin assets that read inputs, call ``lexgpt``, write the data lake."""

import os

# MLflow draws a progress bar for every artifact it copies (several per registered model);
# in the refresh log and the Dagster run log they are noise. A user's own setting wins.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
