"""Tokenizer stages: the BPE vocabulary and the uint16 token shards (with checks)."""


import time

import dagster as dg

from lexgpt import shards
from lexgpt.bpe import BPETokenizer
from lexgpt.hashing import sha256_file, sha256_json, short
from pipelines.assets.data import cleaned_corpus, read_corpus
from pipelines.lake import latest_data_version, markdown_table, write_lineage
from pipelines.resources import DataLake
from pipelines.run_defaults import defaults_from_file
from pipelines.staleness import CONFIG_HASH_KEY, config_hash
from pipelines.versioning import code_version

GROUP = "tokens"
TOKENIZER_FILE = ("bpe_vocab", "tokenizer.json")
HF_TOKENIZER_FILE = ("bpe_vocab", "hf_tokenizer.json")
SHARDS_DIR = ("token_shards",)


@defaults_from_file("bpe_vocab")  # LEXGPT_CONFIG, see pipelines/run_defaults.py
class BPEConfig(dg.Config):
    vocab_size: int = 1000


@dg.asset(
    group_name=GROUP,
    deps=[cleaned_corpus],
    code_version=code_version("lexgpt.bpe", "lexgpt.shards", "pipelines.assets.tokens"),
    description="Byte-level BPE tokenizer trained from scratch on the train episodes "
    "(the val episodes are held out to measure chars per token).",
    owners=["team:model"],
    kinds={"json"},
)
def bpe_vocab(context: dg.AssetExecutionContext, config: BPEConfig, lake: DataLake) -> dg.MaterializeResult:
    df = read_corpus(lake)
    train_ids, val_ids = shards.split_episodes(df["episode_id"].to_list())
    texts = dict(zip(df["episode_id"].to_list(), df["text"].to_list()))
    started = time.perf_counter()
    tokenizer = BPETokenizer.train([texts[i] for i in train_ids], config.vocab_size)
    train_seconds = time.perf_counter() - started
    out = lake.path(*TOKENIZER_FILE)
    tokenizer.save(out)
    tokenizer.export_hf(lake.path(*HF_TOKENIZER_FILE))
    digest = sha256_file(out)
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
            "longest_tokens": markdown_table(
                ["id", "token", "bytes"],
                [[i, repr(b.decode("utf-8", errors="replace")), len(b)] for i, b in longest],
            ),
            "tokenizer_sha256": digest[:16],
            "path": dg.MetadataValue.path(str(out)),
            CONFIG_HASH_KEY: config_hash(config.model_dump()),
            **lake.files_metadata("bpe_vocab"),
        },
        # The file is deterministic (same corpus + config -> same bytes), and config is
        # folded in by the hash: a new vocab size makes the shards stale.
        data_version=dg.DataVersion(short(digest)),
    )


def _corpus_version(context: dg.AssetExecutionContext) -> str | None:
    return latest_data_version(context.instance, cleaned_corpus.key)


def load_tokenizer(lake: DataLake) -> BPETokenizer:
    return BPETokenizer.load(lake.path(*TOKENIZER_FILE))


@dg.asset(
    group_name=GROUP,
    deps=[cleaned_corpus, bpe_vocab],
    code_version=code_version("lexgpt.bpe", "lexgpt.shards", "pipelines.assets.tokens"),
    description="Every episode encoded and joined by <|endoftext|>, as uint16 train/val "
    "shards (memory-mappable) plus a manifest. Val = episodes whose id is divisible by 20.",
    owners=["team:model"],
    kinds={"numpy"},
    check_specs=[
        dg.AssetCheckSpec("val_shard_decodes_to_corpus", asset="token_shards",
                          description="Decoding the val shard gives back the cleaned text exactly."),
        dg.AssetCheckSpec("token_ids_below_vocab_size", asset="token_shards",
                          description="Every token id in both shards is < the vocab size."),
    ],
)
def token_shards(context: dg.AssetExecutionContext, lake: DataLake):
    df = read_corpus(lake)
    tokenizer = load_tokenizer(lake)
    out_dir = lake.path(*SHARDS_DIR)
    started = time.perf_counter()
    manifest = shards.write_shards(df["episode_id"].to_list(), df["text"].to_list(), tokenizer, out_dir)
    seconds = time.perf_counter() - started
    version = sha256_json(manifest)
    write_lineage(out_dir, manifest_sha256=version, tokenizer_sha256=manifest["tokenizer_sha256"])
    splits = manifest["splits"]
    yield dg.MaterializeResult(
        metadata={
            "train_tokens": splits["train"]["tokens"],
            "val_tokens": splits["val"]["tokens"],
            "train_episodes": len(splits["train"]["episodes"]),
            "val_episodes": dg.MetadataValue.json(splits["val"]["episodes"]),
            "chars_per_token": round(
                (splits["train"]["chars"] + splits["val"]["chars"])
                / max(splits["train"]["tokens"] + splits["val"]["tokens"], 1), 3),
            "encode_seconds": round(seconds, 2),
            "val_rule": manifest["val_rule"],
            "path": dg.MetadataValue.path(str(out_dir)),
            **lake.files_metadata("token_shards"),
        },
        data_version=dg.DataVersion(short(version)),
    )
    texts = dict(zip(df["episode_id"].to_list(), df["text"].to_list()))
    mismatched = shards.decode_check(out_dir, tokenizer, texts, split="val")
    yield dg.AssetCheckResult(
        check_name="val_shard_decodes_to_corpus",
        passed=not mismatched,
        metadata={"mismatched_episodes": dg.MetadataValue.json(mismatched)},
    )
    max_id = max(shards.max_token_id(out_dir / splits[s]["file"]) for s in ("train", "val"))
    yield dg.AssetCheckResult(
        check_name="token_ids_below_vocab_size",
        passed=max_id < tokenizer.vocab_size,
        metadata={"max_token_id": max_id, "vocab_size": tokenizer.vocab_size},
    )
