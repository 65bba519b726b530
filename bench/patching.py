"""``--patching``: activation patching (``run.patching.activation_patching``, what ``lazarus-nb introspect patch``
runs) on the embedded model: the default 24 pairs, every layer x every prompt position, on the base model and on the
adapted one (``--patching-adapter DIR``, else step-0 adapters of the default run: the same cost), then the widget's
one-pair call (``run.patching.patch_pair``). Figures are printed, never asserted: the wall and CPU seconds, the work
(token-blocks through the trunk, rows through the unembedding: the cost model of docs/performance.md), an estimate
of the naive way (one forward per layer x position x answer, timed on a sample) and the machine's load meanwhile."""

import lazarus_nb  # noqa: I001  (first: preloads the optimized BLAS before anything imports mlx)

import os
import time
from statistics import median

import mlx.core as mx

from bench.machine import Contamination, load_note
from lazarus_nb.data.tokens import PairIds, encode_pair
from lazarus_nb.model.hooks import edited, forward_hidden, parts
from lazarus_nb.model.load import LoadedModel
from lazarus_nb.run.patching import NUM_PAIRS, activation_patching, patch_pair, patching_pairs
from lazarus_nb.train import checkpoint
from lazarus_nb.train.config import TrainConfig

def block_flops(loaded: LoadedModel) -> int:
    """Forward FLOPs per token through one block: two per weight (attention's own scores are negligible at these
    lengths); 7.1 M for SmolLM2-135M."""
    from mlx.utils import tree_flatten

    _, trunk = parts(loaded.model)
    return 2 * sum(v.size for k, v in tree_flatten(trunk.layers[0].parameters()) if "lora" not in k)


def work(ids: list[PairIds], num_layers: int) -> dict:
    """What one model's patching computes: token-blocks through the trunk (patched prompts from the patched
    position on, then each answer; the clean runs) and rows through the unembedding."""
    prompt = sum(len(p.target_prompt) - q for p in ids for q in range(p.first, len(p.target_prompt)))
    answers = sum((len(p.target_prompt) - p.first) * (len(p.source_answer) + len(p.target_answer) - 2) for p in ids)
    above = sum(num_layers - 1 - layer for layer in range(num_layers))  # blocks run after a patch, over all layers
    clean = sum(2 * len(p.target_prompt) + 2 * (len(p.source_answer) + len(p.target_answer) - 2) for p in ids)
    # one row for both first tokens (the prompt's last position), then each answer's other tokens
    rows = sum((len(p.target_prompt) - p.first) * (len(p.source_answer) + len(p.target_answer) - 1) for p in ids)
    return {"token_blocks": (prompt + answers) * above + clean * num_layers, "unembed_rows": rows * num_layers,
            "patched_cells": sum(len(p.target_prompt) - p.first for p in ids) * num_layers}


def naive_seconds(loaded: LoadedModel, ids: list[PairIds], samples: int = 12) -> float:
    """The naive way's estimate: one plain forward of the target prompt and one answer per (layer, position,
    answer), full-vocabulary logits, timed on ``samples`` of them and scaled to every cell of every pair."""
    pair = ids[0]
    source, _ = forward_hidden(loaded.model, mx.array([pair.source_prompt]))
    tokens = mx.array([pair.target_prompt + pair.source_answer[:-1]])
    times = []
    for i in range(samples):
        layer, position = i % loaded.num_layers, pair.first
        state = source[layer][0, position]
        column = (mx.arange(tokens.shape[1]) == position)[None, :, None]
        t0 = time.perf_counter()
        with edited(loaded.model, {layer: lambda h, s=state, c=column: mx.where(c, s, h)}):
            mx.eval(loaded.model(tokens))
        times.append(time.perf_counter() - t0)
    forwards = sum(2 * (len(p.target_prompt)) for p in ids) * loaded.num_layers  # every position, both answers
    return median(times) * forwards


def measure(adapter: str | None = None, num_pairs: int = NUM_PAIRS, model: str | None = None) -> dict:
    """Every figure of ``--patching`` (``model``: the embedded one by default; the tests run it on a tiny one)."""
    loaded = lazarus_nb.load_model(model) if model else lazarus_nb.load_model()
    if adapter is None:  # step-0 adapters of the default run: B = 0, but every LoRA matmul is paid
        from lazarus_nb.train.loop import prepare

        prepare(loaded, TrainConfig())
    else:
        checkpoint.load_adapter(loaded, adapter)
    config = (checkpoint.read_record(adapter).train if adapter else TrainConfig()).for_model(loaded.num_layers)
    ids = [encode_pair(loaded.tokenizer, p) for p in patching_pairs(config, None, num_pairs)]
    out: dict = {"model": loaded.name, "pairs": num_pairs, "adapter": adapter or "step-0 adapters of TrainConfig()",
                 "hidden_size": loaded.hidden_size, "vocab_size": loaded.vocab_size, "block_flops": block_flops(loaded),
                 "work_per_model": work(ids, loaded.num_layers), "load_before": os.getloadavg()[0]}
    watch, cpu, t0 = Contamination(), sum(os.times()[:2]), time.perf_counter()
    result = activation_patching(loaded, config, num_pairs=num_pairs)
    out.update(seconds=time.perf_counter() - t0, cpu_seconds=sum(os.times()[:2]) - cpu,
               other_processes_cpu_share=watch.fraction(), load_after=os.getloadavg()[0],
               models=[m.label for m in result.models])
    calls = []
    for layer in (0, config.classifier_layer, loaded.num_layers - 1):
        t0 = time.perf_counter()
        patch_pair(loaded, result.pairs[0], layer, result.ids[0].first, config)
        calls.append(time.perf_counter() - t0)
    out["patch_pair_seconds"] = median(calls)
    out["naive_seconds_estimate"] = 2 * naive_seconds(loaded, ids)  # base and adapted
    return out


def report(r: dict) -> None:
    w = r["work_per_model"]
    per_model = r["seconds"] / len(r["models"])
    print(f"activation patching, {r['model']}, {r['pairs']} pairs x every layer x every prompt position, "
          f"{' + '.join(r['models'])} ({r['adapter']})")
    print(f"  {r['seconds']:.1f} s wall ({per_model:.1f} s per model), {r['cpu_seconds']:.1f} s CPU; other processes "
          f"took {r['other_processes_cpu_share']:.0%} of the CPU (load {r['load_before']:.2f} before, "
          f"{r['load_after']:.2f} after)")
    print(f"  per model: {w['patched_cells']:,} patched cells, {w['token_blocks']:,} token-blocks through the trunk "
          f"(~{w['token_blocks'] * r['block_flops'] / 1e12:.2f} TFLOP), {w['unembed_rows']:,} unembedding rows "
          f"({w['unembed_rows'] * 2 * r['hidden_size'] * r['vocab_size'] / 1e12:.2f} TFLOP); "
          f"{1e3 * per_model / w['patched_cells']:.1f} ms "
          f"per patched cell")
    print(f"  the widget's one pair at one cell (run.patching.patch_pair): {r['patch_pair_seconds']:.2f} s")
    print(f"  the naive way (one forward per layer x position x answer), estimated from a sample: "
          f"{r['naive_seconds_estimate']:.0f} s for both models")
    print(f"  {load_note()}")
