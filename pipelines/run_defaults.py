"""Run config defaults from a file: ``LEXGPT_CONFIG=my.yaml``.

Runs that nobody passes config to (every run automation launches, and the UI's
"Materialize" without the launchpad) use each configurable asset's config defaults. With
``LEXGPT_CONFIG`` naming a YAML file in the ``--config`` format (asset name -> overrides),
those overrides *are* the defaults, in every process that loads the definitions with it
set: ``lexgpt ui`` (automation, UI runs), ``lexgpt refresh`` (``--config`` still wins) and
``lexgpt status`` (which compares against them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ENV = "LEXGPT_CONFIG"
CONFIGURABLE = ("bpe_vocab", "ngram_baseline", "trained_model", "evaluation_samples")


class ConfigFileError(ValueError):
    """A config file (``--config`` or ``LEXGPT_CONFIG``) that cannot be used; one line."""


def check_overrides(data: Any, source: str) -> dict[str, dict[str, Any]]:
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigFileError(f"{source}: expected a mapping of asset name -> config, "
                              "e.g. 'trained_model: {max_steps: 100}'")
    return data


def load_overrides(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read a ``--config`` / ``LEXGPT_CONFIG`` file; any problem is a one-line ConfigFileError."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as err:
        raise ConfigFileError(f"{path}: cannot read the config file ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise ConfigFileError(f"{path}: not valid YAML: {err}") from None
    return check_overrides(data, str(path))


def file_overrides() -> dict[str, dict[str, Any]]:
    """The overrides in the file ``LEXGPT_CONFIG`` names ({} when it is unset or empty)."""
    path = os.environ.get(ENV, "").strip()
    if not path:
        return {}
    overrides = load_overrides(path)
    unknown = sorted(set(overrides) - set(CONFIGURABLE))
    if unknown:
        raise ConfigFileError(f"{ENV}={path}: no configurable asset named {', '.join(unknown)} "
                         f"(choose from {', '.join(CONFIGURABLE)})")
    return overrides


def defaults_from_file(asset: str):
    """Class decorator for an asset's ``dg.Config``: the file's overrides become its defaults.

    Without ``LEXGPT_CONFIG`` (or with nothing for ``asset`` in it) the class is returned
    unchanged; else a subclass of the same name whose fields default to the file's values
    (Dagster reads the defaults when the asset is defined, so this runs before that).
    """
    def apply(cls):
        values = file_overrides().get(asset)
        if not values:
            return cls
        where = f"{ENV}={os.environ[ENV]}: {asset}"
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise ConfigFileError(f"{where}: no config field {', '.join(unknown)} "
                                  f"(fields: {', '.join(cls.model_fields)})")
        import pydantic

        try:
            cls(**values)  # a bad value fails here, naming the field
        except pydantic.ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise ConfigFileError(f"{where}: {problems}") from None
        namespace = {"__annotations__": {k: cls.model_fields[k].annotation for k in values},
                     "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__,
                     **values}
        return type(cls)(cls.__name__, (cls,), namespace)

    return apply
