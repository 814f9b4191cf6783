"""The old recipe against ours: same shards, same wall-clock budget, full-val bits/char.

    python bench/recipe.py --minutes 8                 # both, one after the other
    python bench/recipe.py --minutes 8 --only old      # one side

Old: the GPT-2 block this project started from (learned positions, LayerNorm with biases,
GELU MLP, tied embedding; AdamW, linear warmup + cosine, fp32), kept here as compact
reference code and trained by its own short loop, as ``lexgpt`` did then (4 x 128, block
128, batch 16, lr 3e-3 -> 3e-4). Ours: ``lexgpt.training.train`` with the ``cpu-small`` recipe.
Both are scored by ``lexgpt.evaluation.loss_eval.evaluate`` on the whole val split; the n-gram
baseline (``lexgpt.evaluation.ngram``) is printed beside them.
Runs one after the other, never at once: two trainings on two cores slow each other 10x.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

from lexgpt.data.dataloader import BatchSampler
from lexgpt.evaluation.loss_eval import evaluate
from lexgpt.modeling.checkpoint import load_model
from lexgpt.modeling.model import GPT, GPTConfig
from lexgpt.tokenizer.bpe import BPETokenizer
from lexgpt.training.train import TrainConfig, load_token_chars, shards_vocab_size, train


class OldBlock(nn.Module):
    """GPT-2: pre-LayerNorm, fused qkv with biases, GELU MLP 4x wide."""

    def __init__(self, d: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp(self.ln_2(x))


class OldGPT(nn.Module):
    def __init__(self, vocab: int, block: int, n_layer: int, n_head: int, d: int) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.h = nn.ModuleList([OldBlock(d, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.wte.weight = self.lm_head.weight  # tied
        self.config = SimpleNamespace(block_size=block)  # what lexgpt.generation.generate reads
        for name, p in self.named_parameters():
            if p.dim() >= 2:  # GPT-2 init; residual projections scaled by depth
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("c_proj.weight", "mlp.2.weight")) else 0.02
                nn.init.normal_(p, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


PROMPTS = ["What do you think about language models?", "Is there free will?", "What is the meaning of life?"]


def samples(model: nn.Module, tokenizer, use_cache: bool) -> list[str]:
    """Seeded samples for PROMPTS, through the project's one generation function."""
    from lexgpt.generation.generate import generate, qa_prompt

    out = []
    for i, question in enumerate(PROMPTS):
        ids = generate(model, tokenizer.encode(qa_prompt(question)), 60, temperature=0.8, top_k=50,
                       eos_id=tokenizer.eot_id, seed=i, use_cache=use_cache)  # fmt: skip
        out.append(f"{question} -> {tokenizer.decode(list(ids))}")
    return out


def train_old(data: Path, vocab: int, minutes: float, token_chars: np.ndarray) -> dict:
    """The old loop: AdamW (decay on matrices), 30 warmup steps, cosine to the budget, fp32."""
    torch.manual_seed(1337)
    block, batch, lr, min_lr, warmup = 128, 16, 3e-3, 3e-4, 30
    model = OldGPT(vocab, block, n_layer=4, n_head=4, d=128)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95))  # fmt: skip
    sampler = BatchSampler(data / "train.bin", block, batch, seed=1337)
    budget, t0, step = minutes * 60, time.perf_counter(), 0
    while (elapsed := time.perf_counter() - t0) < budget:
        p = elapsed / budget
        cur = lr * (step + 1) / warmup if step < warmup else min_lr + 0.5 * (1 + math.cos(math.pi * p)) * (lr - min_lr)
        for g in opt.param_groups:
            g["lr"] = cur
        x, y = sampler.batch(step, torch.device("cpu"))
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
    seconds = time.perf_counter() - t0
    val = evaluate(model, data / "val.bin", block, 32, token_chars)
    train_old.model = model  # for samples
    return {"recipe": "old", "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
            "steps": step, "tokens_per_s": round(step * batch * block / seconds), **val}  # fmt: skip


def train_ours(data: Path, vocab: int, minutes: float, token_chars: np.ndarray, out: Path) -> dict:
    mc = GPTConfig.from_preset("cpu-small", vocab)
    tc = TrainConfig.for_preset("cpu-small", max_minutes=minutes, checkpoint_minutes=10**9, checkpoint_every=10**9)
    res = train(mc, tc, data, out, token_chars, progress=False)
    train_ours.model = load_model(out)
    return {"recipe": "ours", "params_M": round(GPT(mc).num_params() / 1e6, 3),
            "steps": res.steps, "tokens_per_s": round(res.tokens_per_s), "val_loss": res.val_loss,
            "val_bpc": res.val_bpc, "val_fraction": res.val_fraction}  # fmt: skip


def ngram_baseline(data: Path, token_chars: np.ndarray) -> dict:
    from lexgpt.evaluation import ngram

    score = ngram.baseline_from_shards(data, token_chars, order=5)
    return {"recipe": "token 5-gram Kneser-Ney", "val_bpc": score.val_bpc, "val_loss": score.val_loss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("data_lake/token_shards"))
    p.add_argument("--tokenizer", type=Path, default=None, help="default: the lake's bpe_vocab")
    p.add_argument("--minutes", type=float, default=8.0, help="wall-clock training budget for each")
    p.add_argument("--only", choices=["old", "ours"], default=None)
    args = p.parse_args()
    tokenizer_path = args.tokenizer or args.data.parent / "bpe_vocab" / "tokenizer.json"
    vocab = shards_vocab_size(args.data)
    token_chars = load_token_chars(args.data, tokenizer_path)
    if vocab is None or token_chars is None:
        sys.exit(f"{args.data}: need manifest.json and a tokenizer (run `lexgpt run --only token_shards` first)")
    torch.set_flush_denormal(True)
    load = os.getloadavg()[0]
    rows = []
    if args.only in (None, "old"):
        rows.append(train_old(args.data, vocab, args.minutes, token_chars))
        rows[-1]["samples"] = samples(train_old.model, BPETokenizer.load(tokenizer_path), use_cache=False)
        print(json.dumps(rows[-1]), flush=True)
    if args.only in (None, "ours"):
        with tempfile.TemporaryDirectory(prefix="lexgpt-recipe-") as tmp:
            rows.append(train_ours(args.data, vocab, args.minutes, token_chars, Path(tmp)))
        rows[-1]["samples"] = samples(train_ours.model, BPETokenizer.load(tokenizer_path), use_cache=True)
        print(json.dumps(rows[-1]), flush=True)
    rows.append(ngram_baseline(args.data, token_chars))
    print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.minutes:g} min each, 1-min load average at start {load:.2f}, {torch.get_num_threads()} threads")
    print(f"{'recipe':<26}{'params (M)':>11}{'tokens/s':>10}{'full-val bits/char':>20}")
    for r in rows:
        print(f"{r['recipe']:<26}{r.get('params_M', ''):>11}{r.get('tokens_per_s', ''):>10}{r['val_bpc']:>20.4f}")
    for r in rows:
        for line in r.get("samples", []):
            print(f"[{r['recipe']}] {line!r}")


if __name__ == "__main__":
    main()
