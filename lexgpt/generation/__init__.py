"""Generation: prompt in, streamed text out, with one set of sampling defaults.

- ``generate``             prompt in, streamed text out (sampling with a KV cache): the one generation path
- ``generation_params``    how to sample: one set of defaults, validated in one place
"""
