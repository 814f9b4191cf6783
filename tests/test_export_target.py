"""Where ``export_hf`` writes: a new, empty or previous-export folder, swapped in whole."""

from __future__ import annotations

import json

import pytest
import torch

from lexgpt.modeling.checkpoint import save_model
from lexgpt.modeling.export import EXPORT_FILES, ExportTargetError, export_hf, main
from lexgpt.modeling.model import GPT, GPTConfig
from lexgpt.tokenizer.bpe import BPETokenizer


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return BPETokenizer.train(["the quick brown fox jumps over the lazy dog " * 20], vocab_size=256 + 20 + 1)


def tiny(tokenizer: BPETokenizer, n_embd: int = 16) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=n_embd))


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_a_folder_of_other_files_is_refused_and_left_alone(tmp_path, tokenizer):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "special_tokens_map.json").write_text('{"eos_token": "e"}')  # another model's
    with pytest.raises(ExportTargetError) as err:
        export_hf(tiny(tokenizer), tokenizer, out)
    assert one_line(err).startswith(f"{out}: is not empty (special_tokens_map.json)")
    assert [p.name for p in out.iterdir()] == ["special_tokens_map.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no staging folder left behind


def test_a_hugging_face_folder_not_written_by_lexgpt_is_refused(tmp_path, tokenizer):
    out = export_hf(tiny(tokenizer), tokenizer, tmp_path / "hf")
    (out / "lexgpt_export.json").unlink()  # the same five file names, but not ours
    with pytest.raises(ExportTargetError, match="is not a lexgpt export"):
        export_hf(tiny(tokenizer), tokenizer, out)


def test_a_file_is_refused_in_one_line(tmp_path, tokenizer):
    target = tmp_path / "model.txt"
    target.write_text("keep me")
    with pytest.raises(ExportTargetError) as err:
        export_hf(tiny(tokenizer), tokenizer, target)
    assert one_line(err) == f"{target}: is a file, not a folder; export into a new or empty folder"
    assert target.read_text() == "keep me"


def test_a_previous_export_is_replaced_whole(tmp_path, tokenizer):
    (tmp_path / "empty").mkdir()
    export_hf(tiny(tokenizer), tokenizer, tmp_path / "empty")  # an empty folder is fine too
    out = tmp_path / "hf"
    export_hf(tiny(tokenizer, n_embd=16), tokenizer, out)
    export_hf(tiny(tokenizer, n_embd=32), tokenizer, out)
    assert {p.name for p in out.iterdir()} == EXPORT_FILES
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "hf"]


def test_the_module_cli_names_a_truncated_weights_file(tmp_path, tokenizer):
    weights, _ = save_model(tiny(tokenizer), tmp_path / "model")
    weights.write_bytes(weights.read_bytes()[:500])
    tokenizer.save(tmp_path / "tokenizer.json")
    with pytest.raises(SystemExit) as err:
        main([str(tmp_path / "model"), str(tmp_path / "tokenizer.json"), str(tmp_path / "hf")])
    assert str(err.value).startswith(f"python -m lexgpt.modeling.export: {weights}: cannot read the weights")
    assert "\n" not in str(err.value) and not (tmp_path / "hf").exists()
