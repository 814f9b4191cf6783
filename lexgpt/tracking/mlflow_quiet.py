"""A quiet terminal around MLflow: its warnings and errors, not its progress chatter.

MLflow logs INFO lines (database migrations, ...) through ``logging`` and prints its
registration notes with ``print``; ``lexgpt`` commands show neither (the verdict says what
was registered)::

    quiet_mlflow_logging()                 # once, when MLflow is configured
    with registration_notes_dropped():
        mlflow.register_model(uri, "lexgpt")
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
from collections.abc import Iterator


def quiet_mlflow_logging() -> None:
    """MLflow's (and its alembic migrations') warnings and errors, not their INFO progress
    ("Creating initial MLflow database tables..."); ``MLFLOW_LOGGING_LEVEL`` still wins."""
    if os.environ.get("MLFLOW_LOGGING_LEVEL"):
        return
    for name in ("mlflow", "alembic"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)


# What mlflow.register_model prints (with print, not logging, so no level hides it).
_REGISTRATION_NOTES = re.compile(r"(Successfully registered model '.*'\.|Created version '.*' of model '.*'\."
                                 r"|Registered model '.*' already exists\. Creating a new version of this model\.\.\.)"
                                 r"\n?")


@contextlib.contextmanager
def registration_notes_dropped() -> Iterator[None]:
    """Around ``mlflow.register_model``: drop its notes ("Created version '3' of model
    'lexgpt'.": the verdict says it) and pass other stderr lines on when the block ends."""
    caught = io.StringIO()
    try:
        with contextlib.redirect_stderr(caught):
            yield
    finally:
        for line in caught.getvalue().splitlines(keepends=True):
            if not _REGISTRATION_NOTES.fullmatch(line):
                sys.stderr.write(line)
