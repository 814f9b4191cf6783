"""What a finished Dagster run says: the checks that failed, and the root cause of a failure,
in one line each for the terminal (``lexgpt refresh``)."""

from __future__ import annotations

import dagster as dg


def failed_check_lines(result) -> list[str]:
    """One line per check that failed in a run: its name, what it measured and the bound."""
    lines = []
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            severity = "warning" if evaluation.severity == dg.AssetCheckSeverity.WARN else "error"
            why = evaluation.description or ", ".join(
                f"{k} {getattr(v, 'value', v)}" for k, v in (evaluation.metadata or {}).items())
            lines.append(f"check {evaluation.check_name} failed ({severity}): {why}")
    return lines


def _errors(result):
    """The errors of failed steps, then of the run itself (e.g. while resources set up)."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            yield event.step_failure_data.error
    for event in result.all_events:
        if event.is_run_failure and event.job_failure_data and event.job_failure_data.error:
            yield event.job_failure_data.error


def interrupted(result) -> bool:
    for err in _errors(result):
        while err is not None:
            if err.cls_name in ("DagsterExecutionInterruptedError", "KeyboardInterrupt"):
                return True
            err = err.cause
    return False


def failure_message(result) -> str:
    failed = [line for line in failed_check_lines(result) if "(error)" in line]
    if failed:  # a blocking check: say what it measured, not Dagster's "1 blocking asset check failed"
        return "; ".join(failed)
    for err in _errors(result):
        while err.cause is not None and "dagster" in (err.cls_name or "").lower():
            err = err.cause
        message = err.message.strip()
        # "lexgpt.infra.atomic.LakeWriteError: cannot write ..." -> "cannot write ..."
        if err.cls_name and message.split(":", 1)[0].endswith(err.cls_name) and err.cls_name.endswith("Error") \
                and err.cls_name not in ("ValueError", "RuntimeError", "KeyError", "TypeError"):
            message = message.split(":", 1)[1].strip()
        return message
    return "run failed (see the Dagster UI for the log)"
