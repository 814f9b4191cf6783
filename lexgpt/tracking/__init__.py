"""Tracking: MLflow runs, the model as an MLflow pyfunc, and the registry's champion gate.

- ``runs``             MLflow runs: setup, tags, params, live metrics
- ``registry``         the champion gate, promotion, lineage of a model version
- ``packaging``        the GPT as an MLflow pyfunc of data files: log, register, load
- ``mlflow_model``     the pyfunc flavour a logged model names as its ``loader_module``
- ``run_artifacts``    a run's files: loss curve, tokenizer, rules, samples
- ``plots``            the loss curve
- ``mlflow_quiet``     MLflow's warnings, not its progress chatter, in the terminal
- ``moved_home``       a copied or moved home: MLflow's artifact paths re-pointed to it
"""
