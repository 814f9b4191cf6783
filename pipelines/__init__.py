"""The Dagster layer: thin assets that read inputs, call ``lexgpt``, write the data lake."""

import os

# MLflow draws a progress bar for every artifact it copies (several per registered model);
# in the refresh log and the Dagster run log they are noise. A user's own setting wins.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# torch.compile's kernels under ~/.cache/lexgpt/inductor, not /tmp (emptied at boot on many
# systems): set here, before anything imports torch._dynamo, so the training processes
# launched from this one inherit it. A user's TORCHINDUCTOR_CACHE_DIR wins.
from lexgpt.infra.paths import persist_compile_cache  # noqa: E402

persist_compile_cache()
