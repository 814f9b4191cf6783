"""The ``lexgpt`` command's answers to a bad run-config file: one line, naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import lexgpt_cli


@pytest.mark.parametrize("body, says", [
    ("trained_model: {max_stepz: 10}\n", "trained_model: no config field max_stepz (fields: preset, max_steps,"),
    ("trained_model: {max_steps: lots}\n", "trained_model: max_steps: Input should be a valid integer"),
    ("bpe_vocab: {vocab_size: 300}\nnot_an_asset: {x: 1}\n", "no configurable asset named not_an_asset"),
    ("trained_model: [1, 2]\n", "{config}: expected a mapping of asset name -> config"),
    ("trained_model: {max_steps: 10\n", "{config}: not valid YAML"),
    (None, "{config}: cannot read the config file (No such file or directory)"),
])  # fmt: skip
def test_bad_config_is_refused_before_anything_runs(lexgpt_home: Path, tmp_path: Path, body, says):
    config = tmp_path / "run.yaml"
    if body is not None:
        config.write_text(body)
    result = lexgpt_cli("refresh", "--config", str(config), check=False, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert says.format(config=config) in result.stderr, result.stderr
    assert not (lexgpt_home / "data_lake" / "raw_subtitles").exists()
