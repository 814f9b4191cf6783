"""Evaluation: how good a model is, against what bar, and the verdict printed after training.

- ``loss_eval``    bits per character on the val shard (sliding windows, every target scored once)
- ``ngram``        the count-based bar: interpolated Kneser-Ney token n-gram on the same shards
- ``report``       the verdict the terminal prints after a refresh that trained
"""
