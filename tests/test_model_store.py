"""The model store is data, not code: what a load trusts, and what it refuses (issue 20).

A registered model is three data files whose sha256s are in the registry; code planted in
the artifact store never runs, a changed file is refused in one line that names it, and a
home copied elsewhere keeps working.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from lexgpt.modeling import model_files
from lexgpt.tracking import packaging, runs
from mlflow_store import register_champion, store, tiny_model_files  # noqa: F401 - fixtures

PLANTED = "print('planted')\nopen({marker!r}, 'w').write('ran')\n"


def stored_model_dir(version: str = "1") -> Path:
    """The logged model's folder in the (local) artifact store."""
    uri = MlflowClient().get_model_version_download_uri("lexgpt", version)
    return Path(packaging._display(uri))


def refusal(excinfo) -> str:
    message = str(excinfo.value.message)
    assert "\n" not in message, message
    return message


# --------------------------------------------------------------------------- no code runs


def test_the_logged_model_is_data_with_hashes_in_the_registry(store, tiny_model_files):
    info = register_champion(*tiny_model_files)
    folder = stored_model_dir(info.version)
    assert not list(folder.rglob("*.py")) and not list(folder.rglob("*.pkl"))
    flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["loader_module"] == "lexgpt.tracking.mlflow_model" and not flavor.get("code")
    manifest = json.loads(MlflowClient().get_model_version("lexgpt", info.version).tags["lexgpt.model_files"])
    for name, source in zip(model_files.FILE_NAMES, tiny_model_files):
        stored = folder / model_files.DATA_DIR / name
        assert manifest[name]["sha256"] == model_files.sha256_file(stored) == model_files.sha256_file(source)
        assert manifest[name]["bytes"] == stored.stat().st_size


def test_code_planted_in_the_artifact_store_never_runs(store, tiny_model_files, tmp_path, monkeypatch):
    register_champion(*tiny_model_files)
    folder = stored_model_dir()
    marker = tmp_path / "planted-code-ran"
    # what an attacker with write access to the artifact store does: code beside the model,
    # and an MLmodel that tells MLflow to import it
    (folder / "code").mkdir()
    (folder / "code" / "planted_loader.py").write_text(PLANTED.format(marker=str(marker)) + textwrap.dedent("""
        from lexgpt.tracking.mlflow_model import _load_pyfunc
    """))
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"].update(loader_module="planted_loader", code="code")
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))

    model, tokenizer = packaging.load_model_for_generation("models:/lexgpt@champion")  # generate, chat ...
    served = packaging.stage_for_serving("models:/lexgpt@champion", tmp_path / "serve")  # lexgpt serve
    assert mlflow.pyfunc.load_model(str(served)).predict(["Hello"], params={"max_new_tokens": 2})
    assert not marker.exists()
    assert not list(served.rglob("*.py"))

    # the plant is live: MLflow's own loader, pointed at the store, does run it
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "planted_loader", raising=False)
    mlflow.pyfunc.load_model(str(folder))
    assert marker.read_text() == "ran"


def test_a_model_logged_before_the_subpackages_still_loads(store, tiny_model_files):
    """Versions registered before the library moved into subpackages name the old
    ``lexgpt.mlflow_model`` as their loader; MLflow's own loader still finds it (the shim),
    and lexgpt's checked load never reads the MLmodel at all."""
    register_champion(*tiny_model_files)
    folder = stored_model_dir()
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"]["loader_module"] = "lexgpt.mlflow_model"
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))

    assert mlflow.pyfunc.load_model(str(folder)).predict(["Hello"], params={"max_new_tokens": 2})
    model, _ = packaging.load_model_for_generation("models:/lexgpt@champion")  # hashes still match
    assert model is not None


def test_no_lexgpt_code_loads_a_stored_mlflow_model():
    """Loading through MLflow's pyfunc reads the stored MLmodel (and imports what it names);
    lexgpt loads only the verified data files."""
    import ast

    repo = Path(__file__).resolve().parents[1]
    calls = []
    for path in [*(repo / "lexgpt").rglob("*.py"), *(repo / "pipelines").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(("pyfunc.load_model", "load_pyfunc")):
                calls.append(f"{path.relative_to(repo)}:{node.lineno}")
    assert calls == []


@pytest.mark.parametrize("name, change, says", [
    ("model.pt", lambda p: p.write_bytes(p.read_bytes()[:-100]), "bytes, but"),  # truncated
    ("config.json", lambda p: p.write_text(p.read_text().replace('"n_layer": 1', '"n_layer": 2')), "sha256"),
    ("tokenizer.json", lambda p: p.write_bytes(p.read_bytes().replace(b"e", b"f", 1)), "sha256"),
])  # fmt: skip
def test_a_changed_file_is_refused_in_one_line_naming_it(store, tiny_model_files, tmp_path, name, change, says):
    register_champion(*tiny_model_files)
    stored = stored_model_dir() / model_files.DATA_DIR / name
    change(stored)
    with pytest.raises(packaging.ModelRefused) as err:
        packaging.load_model_for_generation("models:/lexgpt/1")
    assert str(stored) in refusal(err) and says in refusal(err)
    with pytest.raises(packaging.ModelRefused, match="registration|registered"):
        packaging.stage_for_serving("models:/lexgpt@champion", tmp_path / "serve")


def test_the_cli_says_what_is_wrong_in_one_line(store, tiny_model_files, capsys):
    from pipelines.cli import main

    register_champion(*tiny_model_files)
    weights = stored_model_dir() / model_files.DATA_DIR / "model.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["generate", "hi", "--max-new-tokens", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lexgpt generate: {weights}: 1000 bytes"), err


def test_a_version_without_recorded_hashes_is_refused(store, tiny_model_files):
    register_champion(*tiny_model_files)
    MlflowClient().delete_model_version_tag("lexgpt", "1", "lexgpt.model_files")
    with pytest.raises(packaging.ModelRefused) as err:
        packaging.load_model_for_generation("models:/lexgpt@champion")
    assert "has no lexgpt.model_files tag" in refusal(err) and "lexgpt run" in refusal(err)


def test_an_oversized_config_is_refused_before_anything_is_allocated(store, tiny_model_files, monkeypatch):
    # the hashes match (the attacker could write the registry too, or the file was
    # registered like this): GPTConfig's parameter cap must stop it before GPT() allocates
    register_champion(*tiny_model_files)
    config = stored_model_dir() / model_files.DATA_DIR / "config.json"
    values = {**json.loads(config.read_text()), "n_layer": 64, "n_head": 64, "n_embd": 8192, "mlp_hidden": 0}
    config.write_text(json.dumps(values))
    manifest = json.loads(MlflowClient().get_model_version("lexgpt", "1").tags["lexgpt.model_files"])
    manifest["config.json"] = {"sha256": model_files.sha256_file(config), "bytes": config.stat().st_size}
    MlflowClient().set_model_version_tag("lexgpt", "1", "lexgpt.model_files", json.dumps(manifest))

    def allocate(*args, **kwargs):
        raise AssertionError("GPT() was built from the oversized config")

    monkeypatch.setattr("lexgpt.modeling.checkpoint.GPT", allocate)
    with pytest.raises(packaging.ModelRefused) as err:
        packaging.load_model_for_generation("models:/lexgpt/1")
    assert str(config) in refusal(err) and "not a valid model config" in refusal(err)


def test_a_local_folder_loads_as_data_too(tiny_model_files, tmp_path):
    folder = tmp_path / "mine"
    model_files.stage(*tiny_model_files, folder)
    model, tokenizer = packaging.load_model_for_generation(str(folder))
    assert not model.training and tokenizer.vocab_size == model.config.vocab_size
    (folder / "tokenizer.json").write_text("{")
    with pytest.raises(packaging.ModelRefused, match=f"^{folder / 'tokenizer.json'}"):
        packaging.load_model_for_generation(str(folder))


# --------------------------------------------------------------------------- moved homes


@pytest.fixture
def own_home(tmp_path, monkeypatch):
    """A home whose MLflow store is its own ``mlruns/mlflow.db`` (no MLFLOW_TRACKING_URI)."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset below")  # so that teardown restores it
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)

    def use(home: Path) -> str:
        monkeypatch.setenv("LEXGPT_HOME", str(home))
        monkeypatch.delenv("MLFLOW_TRACKING_URI")  # mlflow.set_tracking_uri exports it
        return runs.configure()

    use(tmp_path / "orig")
    yield use
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.mark.parametrize("keep_original", [False, True], ids=["moved", "copied"])
def test_a_copied_home_uses_its_own_artifacts(own_home, tmp_path, tiny_model_files, keep_original):
    register_champion(*tiny_model_files)
    shutil.copytree(tmp_path / "orig", tmp_path / "moved", symlinks=True)
    if not keep_original:
        shutil.rmtree(tmp_path / "orig")
    before = sorted((tmp_path / "orig").rglob("*"))
    own_home(tmp_path / "moved")

    model, _ = packaging.load_model_for_generation("models:/lexgpt@champion")  # `lexgpt generate`
    assert not model.training
    moved_artifacts = (tmp_path / "moved" / "mlruns" / "artifacts").as_uri()
    experiment = MlflowClient().get_experiment(runs.get_or_create_experiment())
    assert experiment.artifact_location.startswith(moved_artifacts)
    info = register_champion(*tiny_model_files, val_bpc=1.0)  # training in the copy writes into the copy
    assert MlflowClient().get_run(info.run_id).info.artifact_uri.startswith(moved_artifacts)
    assert stored_model_dir(info.version).is_relative_to(tmp_path / "moved")
    assert sorted((tmp_path / "orig").rglob("*")) == before  # the original is not written to


def test_a_store_copied_without_its_artifacts_is_refused_in_one_line(own_home, tmp_path, tiny_model_files):
    register_champion(*tiny_model_files)
    (tmp_path / "copy" / "mlruns").mkdir(parents=True)
    shutil.copy(tmp_path / "orig" / "mlruns" / "mlflow.db", tmp_path / "copy" / "mlruns")
    with pytest.raises(runs.moved_home.MovedStoreError) as err:
        own_home(tmp_path / "copy")
    assert str(tmp_path / "orig" / "mlruns" / "artifacts") in refusal(err)
    assert f"copy that folder to {tmp_path / 'copy' / 'mlruns' / 'artifacts'}" in refusal(err)
