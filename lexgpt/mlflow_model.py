"""Compatibility shim: the MLflow ``loader_module`` of models logged before the library
moved into subpackages.

A logged model's MLmodel names the module MLflow imports to load it. Models registered
before the move name ``lexgpt.mlflow_model``; new ones name
:mod:`lexgpt.tracking.mlflow_model` (``packaging.LOADER_MODULE``). This module re-exports
the loader so ``mlflow.pyfunc.load_model`` still loads the old ones. It holds no code of
its own; ``lexgpt serve`` and every ``lexgpt`` command never import it (they write a fresh
MLmodel naming the new path, over files checked against the registry's hashes).
"""

from lexgpt.tracking.mlflow_model import LexGPTModel, _load_pyfunc, default_params

__all__ = ["LexGPTModel", "_load_pyfunc", "default_params"]
