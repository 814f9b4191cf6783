"""The Dagster layer: thin assets that read inputs, call ``lexgpt``, write the data lake."""
