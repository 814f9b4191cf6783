"""The token shards: every episode encoded as uint16 train/val files, with the checks that
they decode to the corpus and stay below the vocab size."""

import time

import dagster as dg

from lexgpt.data import shards
from lexgpt.infra.hashing import sha256_json, short
from pipelines.assets.bpe_vocab import bpe_vocab
from pipelines.assets.cleaned_corpus import cleaned_corpus
from pipelines.assets.shared import TOKENS_GROUP
from pipelines.lake import write_lineage
from pipelines.resources import DataLake
from pipelines.versioning import code_version


@dg.asset(
    group_name=TOKENS_GROUP,
    deps=[cleaned_corpus, bpe_vocab],
    code_version=code_version("lexgpt.tokenizer.bpe", "lexgpt.tokenizer.tokenizer_file", "lexgpt.data.shards",
                              "pipelines.assets.token_shards"),
    description="Every episode encoded and joined by <|endoftext|>, as uint16 train/val "
    "shards (memory-mappable) plus a manifest. Val = episodes whose id is divisible by 20.",
    owners=["team:model"],
    kinds={"numpy"},
)
def token_shards(context: dg.AssetExecutionContext, lake: DataLake) -> dg.MaterializeResult:
    layout = lake.for_asset(context)
    df = layout.read_corpus()
    tokenizer = layout.load_tokenizer()
    out_dir = layout.shards_dir()
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
            **layout.files_metadata("token_shards"),
        },
        data_version=dg.DataVersion(short(version)),
    )


@dg.asset_check(
    asset=token_shards,
    additional_deps=[cleaned_corpus, bpe_vocab],  # what it compares the shard with, and decodes by
    blocking=True,  # a shard that does not decode to the corpus would train on the wrong text
    description="Decoding the val shard gives back the cleaned text exactly.",
)
def val_shard_decodes_to_corpus(context: dg.AssetCheckExecutionContext, lake_reader: DataLake) -> dg.AssetCheckResult:
    layout = lake_reader.for_check(context)
    df = layout.read_corpus()
    texts = dict(zip(df["episode_id"].to_list(), df["text"].to_list()))
    mismatched = shards.decode_check(layout.shards_dir(), layout.load_tokenizer(), texts, split="val")
    return dg.AssetCheckResult(passed=not mismatched,
                               metadata={"mismatched_episodes": dg.MetadataValue.json(mismatched)})


@dg.asset_check(
    asset=token_shards,
    additional_deps=[bpe_vocab],  # the vocab size
    blocking=True,  # an id past the vocab would index past the embedding table
    description="Every token id in both shards is < the vocab size.",
)
def token_ids_below_vocab_size(context: dg.AssetCheckExecutionContext, lake_reader: DataLake) -> dg.AssetCheckResult:
    layout = lake_reader.for_check(context)
    out_dir, vocab_size = layout.shards_dir(), layout.load_tokenizer().vocab_size
    splits = shards.read_manifest(out_dir)["splits"]
    max_id = max(shards.max_token_id(out_dir / splits[s]["file"]) for s in ("train", "val"))
    return dg.AssetCheckResult(passed=max_id < vocab_size,
                               metadata={"max_token_id": max_id, "vocab_size": vocab_size})
