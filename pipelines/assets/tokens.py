"""Tokenizer stages: the BPE vocabulary and the uint16 token shards (with checks)."""


import time

import dagster as dg

from lexgpt import shards
from lexgpt.bpe import BPETokenizer
from lexgpt.tokenizer_export import export_hf
from lexgpt.hashing import sha256_file, sha256_json, short
from pipelines.assets.data import cleaned_corpus
from pipelines.lake import CONFIG_HASH_KEY, config_hash, latest_data_version, table, write_lineage
from pipelines.resources import DataLake
from pipelines.run_defaults import defaults_from_file
from pipelines.versioning import code_version

GROUP = "tokens"


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
    df = lake.read_corpus()
    train_ids, val_ids = shards.split_episodes(df["episode_id"].to_list())
    texts = dict(zip(df["episode_id"].to_list(), df["text"].to_list()))
    started = time.perf_counter()
    tokenizer = BPETokenizer.train([texts[i] for i in train_ids], config.vocab_size)
    train_seconds = time.perf_counter() - started
    out = lake.tokenizer_file()
    tokenizer.save(out)
    export_hf(tokenizer, lake.hf_tokenizer_file())
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
            "longest_tokens": table(
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


@dg.asset(
    group_name=GROUP,
    deps=[cleaned_corpus, bpe_vocab],
    code_version=code_version("lexgpt.bpe", "lexgpt.shards", "pipelines.assets.tokens"),
    description="Every episode encoded and joined by <|endoftext|>, as uint16 train/val "
    "shards (memory-mappable) plus a manifest. Val = episodes whose id is divisible by 20.",
    owners=["team:model"],
    kinds={"numpy"},
)
def token_shards(context: dg.AssetExecutionContext, lake: DataLake) -> dg.MaterializeResult:
    df = lake.read_corpus()
    tokenizer = lake.load_tokenizer()
    out_dir = lake.shards_dir()
    started = time.perf_counter()
    manifest = shards.write_shards(df["episode_id"].to_list(), df["text"].to_list(), tokenizer, out_dir)
    seconds = time.perf_counter() - started
    version = sha256_json(manifest)
    write_lineage(out_dir, manifest_sha256=version, tokenizer_sha256=manifest["tokenizer_sha256"])
    splits = manifest["splits"]
    return dg.MaterializeResult(
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


@dg.asset_check(
    asset=token_shards,
    blocking=True,  # a shard that does not decode to the corpus would train on the wrong text
    description="Decoding the val shard gives back the cleaned text exactly.",
)
def val_shard_decodes_to_corpus(lake_reader: DataLake) -> dg.AssetCheckResult:
    df = lake_reader.read_corpus()
    texts = dict(zip(df["episode_id"].to_list(), df["text"].to_list()))
    mismatched = shards.decode_check(lake_reader.shards_dir(), lake_reader.load_tokenizer(), texts, split="val")
    return dg.AssetCheckResult(passed=not mismatched,
                               metadata={"mismatched_episodes": dg.MetadataValue.json(mismatched)})


@dg.asset_check(
    asset=token_shards,
    blocking=True,  # an id past the vocab would index past the embedding table
    description="Every token id in both shards is < the vocab size.",
)
def token_ids_below_vocab_size(lake_reader: DataLake) -> dg.AssetCheckResult:
    out_dir, vocab_size = lake_reader.shards_dir(), lake_reader.load_tokenizer().vocab_size
    splits = shards.read_manifest(out_dir)["splits"]
    max_id = max(shards.max_token_id(out_dir / splits[s]["file"]) for s in ("train", "val"))
    return dg.AssetCheckResult(passed=max_id < vocab_size,
                               metadata={"max_token_id": max_id, "vocab_size": vocab_size})
