"""What ``lexgpt serve`` runs: MLflow's scoring server app (``/invocations``) behind
:class:`lexgpt.serving.body_limit.BodyLimit`, started as ``uvicorn --factory
lexgpt.serving.scoring_app:create_app`` with the environment MLflow's own command would have
(``mlflow.pyfunc.scoring_server.get_cmd``: the model folder, the request timeout). MLflow's
app reads any body whole; this bounds it.
"""

from __future__ import annotations

from typing import Any

from lexgpt.serving.body_limit import BodyLimit


def create_app() -> Any:
    """MLflow's app, bounded. Its module loads the model named by the environment on import,
    so it is imported here, in the server process, not when this module is."""
    from mlflow.pyfunc.scoring_server.app import app

    return BodyLimit(app)
