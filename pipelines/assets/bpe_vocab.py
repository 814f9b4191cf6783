"""The BPE vocabulary: a byte-level tokenizer trained from scratch on the train episodes."""

import time

import dagster as dg

from lexgpt.data import shards
from lexgpt.infra.hashing import sha256_bytes, sha256_file, sha256_json, short
from lexgpt.tokenizer.bpe import BPETokenizer
from lexgpt.tokenizer.tokenizer_export import export_hf
from pipelines.assets.cleaned_corpus import cleaned_corpus
from pipelines.assets.shared import TOKENS_GROUP
from pipelines.lake import (
    CONFIG_HASH_KEY,
    config_hash,
    latest_data_version,
    table,
    write_lineage,
)
from pipelines.resources import DataLake
from pipelines.run_defaults import defaults_from_file
from pipelines.versioning import code_version


@defaults_from_file("bpe_vocab")  # LEXGPT_CONFIG, see pipelines/run_defaults.py
class BPEConfig(dg.Config):
    vocab_size: int = 1000


@dg.asset(
    group_name=TOKENS_GROUP,
    deps=[cleaned_corpus],
    code_version=code_version("lexgpt.tokenizer.bpe", "lexgpt.tokenizer.bpe_merges", "lexgpt.tokenizer.tokenizer_file",
                              "lexgpt.tokenizer.tokenizer_export", "lexgpt.data.shards", "pipelines.assets.bpe_vocab"),
    description="Byte-level BPE tokenizer trained from scratch on the train episodes "
    "(the val episodes are held out to measure chars per token).",
    owners=["team:model"],
    kinds={"json"},
)
def bpe_vocab(context: dg.AssetExecutionContext, config: BPEConfig, lake: DataLake) -> dg.MaterializeResult:
    layout = lake.for_asset(context)
    df = layout.read_corpus()
    train_ids, val_ids = shards.split_episodes(df["episode_id"].to_list())
    texts = dict(zip(df["episode_id"].to_list(), df["text"].to_list()))
    started = time.perf_counter()
    tokenizer = BPETokenizer.train([texts[i] for i in train_ids], config.vocab_size)
    train_seconds = time.perf_counter() - started
    out = layout.tokenizer_file()
    tokenizer.save(out)
    export_hf(tokenizer, layout.hf_tokenizer_file())
    digest = sha256_file(out)
    token_chars_sha = sha256_bytes(BPETokenizer.load(out).token_char_counts().tobytes())  # as downstream reads them
    held_out = [texts[i] for i in val_ids]
    n_tokens = sum(len(ids) for ids in tokenizer.encode_batch(held_out))
    chars_per_token = sum(len(t) for t in held_out) / max(n_tokens, 1)
    longest = sorted(tokenizer.vocab.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:12]
    write_lineage(out.parent, corpus_version=_corpus_version(context), config=config.model_dump(),
                  tokenizer_sha256=digest)
    context.log.info(f"trained vocab {tokenizer.vocab_size} in {train_seconds:.1f}s")
    return dg.MaterializeResult(
        metadata={
            "vocab_size": tokenizer.vocab_size,
            "chars_per_token_held_out": round(chars_per_token, 3),
            "held_out_episodes": len(val_ids),
            "train_seconds": round(train_seconds, 2),
            "longest_tokens": table(
                ["id", "token", "bytes"],
                [[i, repr(b.decode("utf-8", errors="replace")), len(b)] for i, b in longest],
            ),
            "tokenizer_sha256": digest[:16],
            "path": dg.MetadataValue.path(str(out)),
            CONFIG_HASH_KEY: config_hash(config.model_dump()),
            **layout.files_metadata("bpe_vocab"),
        },
        # The file is deterministic (same corpus + config -> same bytes), and config is
        # folded in by the hash: a new vocab size makes the shards stale. So are the
        # characters each token decodes to, which every bits/char divides by: computed from
        # the file by lexgpt.tokenizer.bpe, an edit there that changes them re-versions the
        # vocab and so re-scores the baseline and the model.
        data_version=dg.DataVersion(short(sha256_json({"tokenizer": digest, "token_chars": token_chars_sha}))),
    )


def _corpus_version(context: dg.AssetExecutionContext) -> str | None:
    return latest_data_version(context.instance, cleaned_corpus.key)
