"""Serving: the HTTP apps ``lexgpt serve`` runs.

- ``openai_api``     the OpenAI API (chat, completions, streaming) over the one generation path
- ``scoring_app``    MLflow's scoring app behind a request-body bound
- ``body_limit``     a bound on HTTP request bodies (an ASGI middleware), shared by both
"""
