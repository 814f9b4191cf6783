"""The model: the GPT itself, its weights on disk, and its export.

- ``model``          the GPT (decoder-only transformer, Qwen3-style block)
- ``checkpoint``     save/resume a training state; ``load_model``, the one loader of weights
- ``model_files``    the three files a registered model is, their hashes, checked on load
- ``export``         the weights as a Hugging Face ``Qwen3ForCausalLM`` folder
- ``gguf_export``    the weights and tokenizer as one GGUF file for llama.cpp
"""
