"""Training-step benchmark (``make bench``): our dual-reward step against mlx-lm's ``default_loss`` step.

In one process, after warm-up, alternating round by round on the same token batch, it times:

  (a) our dual-reward training step: ``lazarus_nb.train.make_step``, the step ``train.train`` loops over (both
      losses from one trunk forward, logits only where a loss reads them, finiteness check, Adam update), on
      the batch step 1 of a default run trains on (``train.schedule``);
  (b) the peer: mlx-lm's LoRA step with the same adapters on the same tokens, written the way
      ``mlx_lm.tuner.trainer.train`` writes it: ``nn.value_and_grad(model, default_loss)`` plus
      ``optimizer.update`` inside ``mx.compile(inputs=state, outputs=state)``, the mask set to score
      exactly our answer tokens; also (b') the same step on the batch padded the way mlx-lm's own
      ``iterate_batches`` pads (to 1 + a multiple of 32), for context;
  (c) a plain fp32 sgemm of the model's dominant matmul shape (tokens x hidden x intermediate: the MLP),
      the machine's limit for this work; plus a square 1024^3 sgemm for context.

Model FLOPs of our step (what MFU counts; pads and unscored positions are not counted):

  N   = real (non-pad) tokens in the batch, P = matmul weights per token in the trunk
        (per block: q, k, v, o, gate, up, down), L = blocks, D = hidden, V = vocabulary
  fwd_base  = 2 * P * N                                   trunk matmuls
  fwd_attn  = 4 * L * n_heads * head_dim * sum_rows n(n+1)/2   QK^T and PV on causal pairs
  fwd_lora  = 2 * N * r * sum_adapters (in + out)          the V/O adapters
  fwd_unemb = 2 * D * V * (B + answer tokens)              lens row per sample + scored answer positions
  step      = 2 * (fwd_base + fwd_unemb) + 3 * (fwd_attn + fwd_lora)

Backward: base weights and the (tied) unembedding are frozen, so they need only input gradients (1x
forward); attention needs dQ, dK, dV and dP (2x); LoRA needs input and weight gradients (2x).
MFU = step FLOPs / step seconds / the sgemm rate measured in (c).

(a) is the step ``train`` runs for the config (compiled when ``TrainConfig.compiles``, as for a default run); the
other variant is timed too.

Then the first ``--run-steps`` (100) steps of a default run as the CLI trains them (``train.train``: its
schedule, its compile choice, a snapshot every 25 steps), with mlx-lm's step on a second copy of the model
on the same batch after each of ours: seconds per step including snapshots against mlx-lm's, the snapshot
overhead in place, and time-to-readable (seconds from the start of training to the snapshot at
``History.steps_to_readable`` of the classifier layer).

``--full`` also times a full default run (``run_dual_reward(TrainConfig())``: 500 steps, snapshots every 25,
baseline and final evaluation with greedy answers) and the snapshot overhead (100 steps with
``snapshot_every`` 25 vs 0). ``--study`` measures our step's ``compile=True`` variant, length bucketing and
the unread last column (it writes ``runs/bench/study.json``). ``--sweep`` runs the model-size x
batch-size table of docs/performance.md in subprocesses. ``--model PATH`` benchmarks any model
``lazarus_nb.load_model`` can load (the tests run it on a tiny one). Targets are printed with how far they
are missed.
"""

import lazarus_nb  # noqa: I001  (first: preloads the optimized BLAS before anything imports mlx)

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path
from statistics import median

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx_lm.tuner.trainer import default_loss

from lazarus_nb import LazarusError
from lazarus_nb.model import blas
from lazarus_nb.model.lens import LogitLens, parts
from lazarus_nb.model.load import DEFAULT_MODEL
from lazarus_nb.model.lora import adapters, lora_arrays, set_lora_arrays
from lazarus_nb.measure.losses import dual_loss
from lazarus_nb.data.tokens import Batch
from lazarus_nb.train.config import READABLE, TrainConfig
from lazarus_nb.train.loop import (TrainState, batch_for, dual_loss_and_grad, make_step, prepare, schedule,
                                   snapshot_due, token_lengths, train)

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "runs" / "bench"
# issue 13's targets (the full-run target is issue 10's)
TARGETS = {"speedup_vs_mlx_lm": 1.12, "speedup_with_snapshots": 1.12, "mfu": 0.5, "snapshot_overhead": 0.10,
           "full_run_seconds": 300.0}
# TinyLlama-1.1B's shape (random weights, fp32): the "1.1B" row of the scaling table.
TINYLLAMA = dict(model_type="llama", hidden_size=2048, num_hidden_layers=22, intermediate_size=5632,
                 num_attention_heads=32, num_key_value_heads=4, rms_norm_eps=1e-5, vocab_size=32000,
                 rope_theta=10000.0, tie_word_embeddings=False)
BATCH_FIELDS = [f.name for f in fields(Batch)]
LOAD_AT_START = list(os.getloadavg())  # before this process adds its own 2 BLAS threads to the load


# ---------------------------------------------------------------- the model and the batch


@dataclass
class Setup:
    name: str
    model: nn.Module
    batch: Batch  # the trainer's first batch, or random tokens of its shape
    state: TrainState  # as train.prepare builds it: the classifier layer, the Adam our step uses


def lengths_of(batch: Batch) -> tuple[list[int], list[int]]:
    """(prompt + answer tokens, prompt tokens) per row: the real tokens, pads excluded."""
    prompt = [int(p) + 1 for p in batch.prompt_last.tolist()]
    answer = np.bincount(np.array(batch.answer_rows), minlength=batch.size).tolist()
    return [p + a for p, a in zip(prompt, answer)], prompt


def pad_fraction(batches: list[Batch]) -> float:
    return 1 - sum(sum(lengths_of(b)[0]) for b in batches) / sum(b.tokens.size for b in batches)


def adam(model: nn.Module, learning_rate: float) -> optim.Adam:
    opt = optim.Adam(learning_rate=learning_rate)
    opt.init(model.trainable_parameters())
    return opt


def build(model_name: str, batch_size: int) -> Setup:
    """``embedded``, ``tinyllama-1.1b-random`` or any model ``lazarus_nb.load_model`` takes."""
    cfg = TrainConfig(batch_size=batch_size)
    builtin = model_name in ("embedded", "tinyllama-1.1b-random")
    loaded = lazarus_nb.load_model(DEFAULT_MODEL if builtin else model_name)
    state = prepare(loaded, cfg)
    batch = batch_for(loaded.tokenizer, state, schedule(loaded.tokenizer, state)[0])  # the trainer's step 1
    if model_name != "tinyllama-1.1b-random":
        name = "smollm2-135m (embedded)" if model_name == "embedded" else model_name
        return Setup(name, loaded.model, batch, state)
    from mlx_lm.models import llama

    mx.random.seed(0)
    model = llama.Model(llama.ModelArgs(**TINYLLAMA))
    model.set_dtype(mx.float32)
    mx.eval(model.parameters())
    model.eval()
    state = prepare(replace(loaded, model=model, num_layers=TINYLLAMA["num_hidden_layers"]), cfg)
    # Random tokens of the default batch's shape; positions, masks and lengths of the real batch.
    rng = np.random.default_rng(0)
    vocab = TINYLLAMA["vocab_size"]
    tokens = mx.array(rng.integers(3, vocab, size=batch.tokens.shape), dtype=mx.int32)
    targets = tokens[batch.answer_rows, batch.answer_pos + 1]
    rand = replace(batch, tokens=tokens, answer_targets=targets,
                   class_ids=mx.array(rng.integers(3, vocab, size=batch.size), dtype=mx.int32))
    return Setup("TinyLlama-1.1B shape (random weights)", model, rand, state)


# ---------------------------------------------------------------- the peer step (ours is train.make_step)


def peer_lengths(real: list[int], prompt: list[int]) -> mx.array:
    """default_loss scores token positions p with offset <= p <= length; (prompt length, total - 1) scores
    exactly the answer tokens, i.e. the same targets as our answer loss."""
    return mx.array([[p, t - 1] for p, t in zip(prompt, real)], dtype=mx.int32)


def peer_step_fn(model: nn.Module, learning_rate: float):
    """mlx-lm's trainer step: value_and_grad(default_loss) + Adam update, compiled over the state."""
    optimizer = adam(model, learning_rate)
    loss_value_and_grad = nn.value_and_grad(model, default_loss)
    state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(tokens, lengths):
        (lvalue, toks), grad = loss_value_and_grad(model, tokens, lengths)
        optimizer.update(model, grad)
        return lvalue, toks

    def run(tokens: mx.array, lengths: mx.array) -> float:
        lvalue, toks = step(tokens, lengths)
        mx.eval(state, lvalue, toks)
        return lvalue.item()

    return run


def mlx_lm_padded(tokens: mx.array, pad_id: int) -> mx.array:
    """The tokens padded as mlx-lm's iterate_batches pads: to 1 + pad_to * ceil(max_len / pad_to), pad_to 32."""
    width = 1 + 32 * ((tokens.shape[1] + 31) // 32)
    out = np.full((tokens.shape[0], width), pad_id, dtype=np.int32)
    out[:, : tokens.shape[1]] = np.array(tokens)
    return mx.array(out)


def sgemm_fn(m: int, k: int, n: int):
    a, b = mx.random.normal((m, k)), mx.random.normal((k, n))
    mx.eval(a, b)
    reps = max(1, int(2e9 // (2 * m * k * n)))  # ~2 GFLOP per timed call, so tiny shapes are not all overhead

    def run() -> None:
        for _ in range(reps):
            mx.eval(a @ b)

    return run, 2 * m * k * n * reps


# ---------------------------------------------------------------- FLOPs


def _weight(m: nn.Module) -> mx.array:
    return m.linear.weight if hasattr(m, "linear") else m.weight


def arch(model: nn.Module) -> dict:
    _, trunk = parts(model)
    block = trunk.layers[0]
    att, mlp = block.self_attn, block.mlp
    per_block = sum(_weight(m).size for m in (att.q_proj, att.k_proj, att.v_proj, att.o_proj, mlp.gate_proj,
                                              mlp.up_proj, mlp.down_proj))
    vocab, hidden = trunk.embed_tokens.weight.shape
    lora = list(adapters(model).values())
    return dict(layers=len(trunk.layers), hidden=hidden, vocab=vocab, intermediate=_weight(mlp.gate_proj).shape[0],
                heads=att.n_heads, head_dim=_weight(att.q_proj).shape[0] // att.n_heads,
                matmul_params_per_token=per_block * len(trunk.layers),
                lora_in_out_sum=sum(m.lora_a.shape[0] + m.lora_b.shape[1] for m in lora), rank=lora[0].lora_a.shape[1])


def step_flops(a: dict, real: list[int], prompt: list[int], full_logits: bool = False) -> dict:
    """Model FLOPs of one training step (see the module docstring); ``full_logits``: the peer's count."""
    n = sum(real)
    answers = sum(r - p for r, p in zip(real, prompt))
    base = 2 * a["matmul_params_per_token"] * n
    attn = 4 * a["layers"] * a["heads"] * a["head_dim"] * sum(t * (t + 1) // 2 for t in real)
    lora = 2 * n * a["rank"] * a["lora_in_out_sum"]
    positions = n if full_logits else len(real) + answers
    unemb = 2 * a["hidden"] * a["vocab"] * positions
    return dict(total=2 * (base + unemb) + 3 * (attn + lora), fwd_base=base, fwd_attn=attn, fwd_lora=lora,
                fwd_unembed=unemb, tokens=n, unembedded_positions=positions)


# ---------------------------------------------------------------- timing helpers


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def peak_mb(fn, *args) -> float:
    mx.reset_peak_memory()
    fn(*args)
    return mx.get_peak_memory() / 2**20


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def busy_cpu_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (/proc/stat), for the contamination check."""
    try:
        fields_ = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    except OSError:
        return float("nan")
    user, nice, system, idle, iowait, irq, softirq = (int(x) for x in fields_)
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class Contamination:
    """How much CPU other processes used while we measured: (machine busy - our own CPU) / (wall x cores)."""

    def __init__(self) -> None:
        self.t, self.busy, self.own = time.perf_counter(), busy_cpu_seconds(), sum(os.times()[:2])

    def fraction(self) -> float:
        wall = time.perf_counter() - self.t
        other = (busy_cpu_seconds() - self.busy) - (sum(os.times()[:2]) - self.own)
        return max(0.0, other / (wall * (os.cpu_count() or 1)))


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def missed(name: str, value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    if ok:
        return f"target {name} {'>=' if higher_is_better else '<='} {target:g}: met ({value:.3g})"
    factor = target / value if higher_is_better else value / target
    return (f"target {name} {'>=' if higher_is_better else '<='} {target:g}: MISSED ({value:.3g}; "
            f"{factor:.2f}x short)")


# ---------------------------------------------------------------- the main measurement


def measure(args) -> dict:
    s = build(args.model, args.batch_size)
    model, batch, state = s.model, s.batch, s.state
    cfg = state.config
    a = arch(model)
    real, prompt = lengths_of(batch)
    compiled = cfg.compiles(cfg.steps)  # (a) is the step train() runs for this config: compiled or not
    ours = make_step(model, state.optimizer, state.classifier_layer, cfg.cls_weight, compile=compiled)
    ours_other = make_step(model, adam(model, cfg.learning_rate), state.classifier_layer, cfg.cls_weight,
                           compile=not compiled)
    peer = peer_step_fn(model, cfg.learning_rate)
    lengths = peer_lengths(real, prompt)
    tokens_padded = mlx_lm_padded(batch.tokens, 0)
    m_tokens = batch.size * (batch.tokens.shape[1] - 1)  # the rows the step forwards (dual_loss drops a column)
    gemm, gemm_flops = sgemm_fn(m_tokens, a["hidden"], a["intermediate"])
    square, square_flops = sgemm_fn(1024, 1024, 1024)

    # Sanity: at the same adapters the peer's loss is our answer loss (same targets, full-logits route).
    _, _, our_ans = dual_loss(LogitLens(model), batch, state.classifier_layer, cfg.cls_weight)
    peer_ce, _ = default_loss(model, batch.tokens, lengths)
    loss_check = abs(our_ans.item() - peer_ce.item())

    jobs = {"ours": (ours, (batch,)), "ours_other": (ours_other, (batch,)), "peer": (peer, (batch.tokens, lengths)),
            "sgemm": (gemm, ()), "square": (square, ())}
    if not args.no_peer_padded:
        jobs["peer_mlx_lm_padded"] = (peer, (tokens_padded, lengths))
    t0 = time.perf_counter()
    watch = Contamination()
    first = {k: timed(fn, *xs) for k, (fn, xs) in jobs.items()}  # includes mx.compile of the peer
    for _ in range(args.warmup - 1):
        for fn, xs in jobs.values():
            fn(*xs)
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(args.rounds):
        for k, (fn, xs) in jobs.items():
            times[k].append(timed(fn, *xs))
    med = {k: median(v) for k, v in times.items()}
    other_cpu = watch.fraction()
    peak_ours = peak_mb(ours, batch)
    peak_peer = peak_mb(peer, batch.tokens, lengths)

    flops = step_flops(a, real, prompt)
    peer_flops = step_flops(a, real, prompt, full_logits=True)
    sgemm_gflops = gemm_flops / med["sgemm"] / 1e9
    achieved = flops["total"] / med["ours"] / 1e9
    info = blas.info()
    result = {
        "model": s.name,
        "batch_size": batch.size,
        "batch_shape": list(batch.tokens.shape),
        "real_tokens": flops["tokens"],
        "padded_tokens": batch.tokens.size,
        "forwarded_tokens": m_tokens,
        "step_seconds": med["ours"],
        "step_compiled": compiled,
        "other_step_seconds": med["ours_other"],  # the same step with compile=not step_compiled
        "peer_step_seconds": med["peer"],
        "speedup_vs_mlx_lm": med["peer"] / med["ours"],
        "peer_mlx_lm_padded_step_seconds": med.get("peer_mlx_lm_padded"),
        "speedup_vs_mlx_lm_padded": med["peer_mlx_lm_padded"] / med["ours"] if "peer_mlx_lm_padded" in med
        else None,
        "flop_bound_speedup": peer_flops["total"] / flops["total"],
        "step_gflop": flops["total"] / 1e9,
        "peer_step_gflop": peer_flops["total"] / 1e9,
        "achieved_gflops": achieved,
        "sgemm_shape": [m_tokens, a["hidden"], a["intermediate"]],
        "sgemm_gflops": sgemm_gflops,
        "square_sgemm_gflops": square_flops / med["square"] / 1e9,
        "mfu": achieved / sgemm_gflops,
        "mfu_vs_square_sgemm": achieved / (square_flops / med["square"] / 1e9),
        "blas": info.name,
        "blas_path": info.path,
        "tokens_per_second": flops["tokens"] / med["ours"],
        "peak_memory_mb": peak_ours,
        "peer_peak_memory_mb": peak_peer,
        "maxrss_mb": maxrss_mb(),
        "first_call_seconds": first,
        "rounds": args.rounds,
        "step_seconds_all": times["ours"],
        "peer_step_seconds_all": times["peer"],
        "peer_loss_equals_answer_loss": loss_check,
        "flops": {k: v for k, v in flops.items()},
        "mlx": mx.__version__,
        "load_before": LOAD_AT_START,
        "other_processes_cpu_fraction": other_cpu,  # of all cores, during (a)-(c); > 0.05: a busy machine
        "bench_seconds": time.perf_counter() - t0,
    }
    del ours, ours_other, peer, jobs, model, s, state
    if args.run_steps and args.model != "tinyllama-1.1b-random":
        result.update(cli_run(args.model, args.run_steps))
    if args.full and args.model == "embedded":
        result.update(full_run())
    result["load_after"] = list(os.getloadavg())
    return result


@contextmanager
def timing_snapshots():
    """Inside the block, every snapshot ``train`` takes is timed in place; yields the list of seconds."""
    import lazarus_nb.train.loop as train_module

    times: list[float] = []
    original = train_module.snapshot

    def timed_snapshot(*a, **k):  # train() looks ``snapshot`` up in its module
        t = time.perf_counter()
        out = original(*a, **k)
        times.append(time.perf_counter() - t)
        return out

    train_module.snapshot = timed_snapshot
    try:
        yield times
    finally:
        train_module.snapshot = original


def full_run() -> dict:
    """A full default run, then the snapshot overhead (fresh model each: apply_lora needs a clean model)."""
    with timing_snapshots() as snap_times:
        return _full_run(snap_times)


class _Stop(Exception):
    """Raised by the run's callback to end ``train`` after the steps the benchmark times."""


def cli_run(model_name: str, run_steps: int) -> dict:
    """The first ``run_steps`` steps of a default run as the CLI trains it (``train.train`` with ``TrainConfig()``:
    its schedule, its compile choice, a snapshot every ``snapshot_every`` steps), on a fresh model.

    After each of our steps, mlx-lm's compiled step (b) trains a second copy of the model on the same batch;
    its time is measured, and subtracted from our wall clock, so both see the same load. Reports seconds per
    step including snapshots (from the end of the step-0 snapshot; ``run_steps`` a multiple of
    ``snapshot_every`` counts the steady share of snapshots), the snapshot overhead in place, and
    time-to-readable: seconds from the start of ``train`` (compiling, the step-0 snapshot included) to the
    snapshot at ``History.steps_to_readable`` of the classifier layer."""
    cfg = TrainConfig()
    loaded, peer_loaded = (lazarus_nb.load_model(DEFAULT_MODEL if model_name == "embedded" else model_name)
                           for _ in range(2))
    state = prepare(loaded, cfg)
    prepare(peer_loaded, cfg)  # the same adapters (same seed), on the peer's own copy
    peer = peer_step_fn(peer_loaded.model, cfg.learning_rate)
    plan = schedule(loaded.tokenizer, state)
    peer_times: list[float] = []
    marks: dict[tuple[str, int], float] = {}
    hidden = 0.0  # seconds the callback spent on the peer: not part of our run

    def callback(event) -> None:
        nonlocal hidden
        marks[(event.kind, event.step)] = time.perf_counter() - hidden
        if event.kind == "step":
            t = time.perf_counter()
            batch = batch_for(loaded.tokenizer, state, plan[event.step - 1])
            peer_times.append(timed(peer, batch.tokens, peer_lengths(*lengths_of(batch))))
            hidden += time.perf_counter() - t
        last_event = "snapshot" if snapshot_due(run_steps, cfg.steps, cfg.snapshot_every) else "step"
        if event.step == run_steps and event.kind == last_event:
            raise _Stop

    watch = Contamination()
    with timing_snapshots() as snap_times:
        start = time.perf_counter()
        try:
            train(loaded, state, callback=callback)
        except _Stop:
            pass
    steps = [s.seconds for s in state.history.steps]
    after_first = marks[("snapshot", 0)]
    per_step = (marks[max(marks, key=marks.get)] - after_first) / run_steps
    readable = state.history.steps_to_readable(state.classifier_layer)
    peer_mean = sum(peer_times) / len(peer_times)
    return {
        "run_steps": run_steps,
        "run_step_compiled": cfg.compiles(cfg.steps),
        "run_seconds_per_step_with_snapshots": per_step,
        "run_step_seconds_mean": sum(steps) / len(steps),
        "run_step_seconds_median": median(steps),
        "run_peer_step_seconds_mean": peer_mean,  # incl. its compiles per new batch shape, as mlx-lm pays them
        "run_peer_step_seconds_median": median(peer_times),
        "run_speedup_with_snapshots": peer_mean / per_step,
        "run_speedup_steps_only": peer_mean / (sum(steps) / len(steps)),
        "run_snapshot_seconds": snap_times,
        "run_snapshot_overhead": sum(snap_times[1:]) / sum(steps),  # snapshots after step 0 / the steps' time
        "readable_threshold": READABLE,
        "steps_to_readable": readable,
        "time_to_readable_seconds": None if readable is None else marks[("snapshot", readable)] - start,
        "run_first_snapshot_seconds": after_first - start,
        "run_other_processes_cpu_fraction": watch.fraction(),
    }


def _full_run(snap_times: list[float]) -> dict:
    from lazarus_nb.run.steps import run_dual_reward

    marks: list[tuple[str, int, float]] = []
    watch = Contamination()
    loaded = lazarus_nb.load_model()
    t0 = time.perf_counter()
    res = run_dual_reward(loaded, TrainConfig(), output=None,
                          callback=lambda e: marks.append((e.kind, e.step, time.perf_counter())))
    full = time.perf_counter() - t0
    train_wall = marks[-1][2] - marks[0][2]  # from the step-0 snapshot to the last snapshot
    out = {
        "full_run_seconds": full,
        "full_run_train_step_seconds": res.state.seconds,  # sum of the 500 optimiser steps
        "full_run_train_wall_seconds": train_wall,
        "full_run_eval_seconds": full - train_wall,  # baseline + final evaluation (+ first snapshot, prepare)
        "full_run_snapshots": len(res.state.history.snapshots),
        "full_run_final_canonical_correct": res.final.canonical_correct,
        "full_run_final_loss": res.state.history.steps[-1].total,
        "full_run_snapshot_seconds": sum(snap_times),
        "full_run_snapshot_seconds_median": median(snap_times),
        # snapshots at the default snapshot_every, as a fraction of the optimiser steps' time
        "full_run_snapshot_overhead": sum(snap_times[1:]) / res.state.seconds,
    }
    snap_times.clear()
    del loaded, res
    walls = {}
    for every in (0, 25, 0, 25):  # twice each, alternating; the median of the two counts
        loaded = lazarus_nb.load_model()
        cfg = TrainConfig(steps=100, snapshot_every=every)
        state = prepare(loaded, cfg)
        t = time.perf_counter()
        train(loaded, state)
        walls.setdefault(every, []).append((time.perf_counter() - t, state.seconds,
                                            len(state.history.snapshots), sum(snap_times)))
        snap_times.clear()
        del loaded, state
    off = median([w[0] for w in walls[0]])
    on = median([w[0] for w in walls[25]])
    off_steps = median([w[1] for w in walls[0]])
    extra = walls[25][0][2] - walls[0][0][2]
    each = (on - off) / extra
    out.update({
        "snapshot_overhead": (on - off) / off,
        "snapshot_run_steps": 100,
        "snapshot_on_seconds": on,
        "snapshot_off_seconds": off,
        "snapshot_seconds_each": each,
        "train_loop_step_seconds_median": off_steps / 100,
        "snapshot_overhead_direct": median([w[3] for w in walls[25]]) / median([w[1] for w in walls[25]]),
        # at the default 500 steps: 21 snapshots instead of 2
        "snapshot_overhead_default_projected": 19 * each / (500 * off_steps / 100 + 2 * each),
        "full_other_processes_cpu_fraction": watch.fraction(),
    })
    return out


# ---------------------------------------------------------------- --study: compile, bucketing, trimming


def study(args) -> dict:
    if args.cold:  # fresh on-disk kernel cache: what a first run on a new machine pays for mx.compile
        os.environ["TMPDIR"] = tempfile.mkdtemp(prefix="lazarus_bench_mlx_")
    loaded = lazarus_nb.load_model()
    state = prepare(loaded, TrainConfig())
    cfg, model, layer, tok = state.config, loaded.model, state.classifier_layer, loaded.tokenizer
    sched = schedule(tok, state)
    every = [batch_for(tok, state, idx) for idx in sched]  # all batches of a default run
    batches, batch0 = every[: args.study_steps], every[0]
    init = lora_arrays(model)
    watch = Contamination()
    out: dict = {"study_steps": args.study_steps, "cold_kernel_cache": bool(args.cold),
                 "load_before": LOAD_AT_START}

    def our_step(compile: bool = False):  # from the current adapters, with a fresh Adam
        return make_step(model, adam(model, cfg.learning_rate), layer, cfg.cls_weight, compile)

    # 1. mx.compile: two training runs from the same adapters over the same first K batches, stepped in turn
    # (each with its own adapters and Adam), so load changes hit both alike.
    variants = {name: {"step": our_step(compile), "arrays": dict(init), "losses": [], "times": [], "first": []}
                for name, compile in (("plain", False), ("compiled", True))}
    shapes = set()
    for b in batches:
        shape = (b.tokens.shape[1], b.answer_pos.shape[0])
        for v in variants.values():
            set_lora_arrays(model, v["arrays"])
            t = time.perf_counter()
            v["losses"].append(v["step"](b))
            v["times"].append(time.perf_counter() - t)
            v["arrays"] = lora_arrays(model)
            v["first"].append(shape not in shapes)
        shapes.add(shape)
    base = np.array(variants["plain"]["losses"])
    comp = {}
    for name, v in variants.items():
        steady = [t for t, f in zip(v["times"], v["first"]) if not f] or v["times"]  # tiny --study-steps
        comp[name] = {
            "total_seconds": sum(v["times"]),
            "steady_median_seconds": median(steady),
            "first_call_seconds": [t for t, f in zip(v["times"], v["first"]) if f],
            "max_abs_loss_diff_vs_plain": float(np.abs(np.array(v["losses"]) - base).max()),
        }
    p, c = comp["plain"], comp["compiled"]
    c["steady_gain"] = 1 - c["steady_median_seconds"] / p["steady_median_seconds"]
    c["compile_cost_seconds"] = sum(c["first_call_seconds"]) - len(c["first_call_seconds"]) * \
        c["steady_median_seconds"]
    saved = p["steady_median_seconds"] - c["steady_median_seconds"]
    c["break_even_steps"] = c["compile_cost_seconds"] / saved if saved > 0 else None
    out["compile"] = comp
    out["distinct_shapes_in_study"] = len(shapes)
    out["distinct_shapes_default_run"] = len({(b.tokens.shape[1], b.answer_pos.shape[0]) for b in every})
    set_lora_arrays(model, init)

    # 2. Padding and length bucketing on this data: the same K*B samples batched as scheduled vs fully sorted
    # by length, step times alternated batch by batch.
    picked = np.concatenate(sched[: args.study_steps])
    by_len = picked[np.argsort(np.array(token_lengths(tok, state.train_set))[picked], kind="stable")]
    bucketed = [batch_for(tok, state, by_len[i : i + cfg.batch_size]) for i in range(0, len(by_len), cfg.batch_size)]
    step = our_step()
    for b in bucketed[:3] + batches[:3]:
        step(b)
    t_sched, t_buck = [], []
    for bs, bb in zip(batches, bucketed):
        t_sched.append(timed(step, bs))
        t_buck.append(timed(step, bb))
    out["bucketing"] = {
        "pad_fraction_scheduled": pad_fraction(batches),
        "pad_fraction_bucketed": pad_fraction(bucketed),
        "pad_fraction_default_run": pad_fraction(every),
        "scheduled_seconds_per_step": sum(t_sched) / len(t_sched),
        "bucketed_seconds_per_step": sum(t_buck) / len(t_buck),
        "gain": 1 - sum(t_buck) / sum(t_sched),
    }
    set_lora_arrays(model, init)

    # 3. The unread last column: no loss reads the last column's output (it would predict the token after
    # the answer), so losses.dual_loss forwards tokens[:, :-1]. The "before" step is the same batch with one
    # pad column appended, which makes dual_loss forward all T original columns again.
    lens = LogitLens(model)
    before = with_extra_column(batch0)
    now_l = [x.item() for x in dual_loss(lens, batch0, layer, cfg.cls_weight)]
    before_l = [x.item() for x in dual_loss(lens, before, layer, cfg.cls_weight)]
    t_before, t_now = [], []
    for _ in range(3):
        step(before)
        step(batch0)
    for _ in range(args.rounds):
        t_before.append(timed(step, before))
        t_now.append(timed(step, batch0))
    out["trim_last_column"] = {
        "max_abs_loss_diff": max(abs(x - y) for x, y in zip(now_l, before_l)),
        "columns_forwarded": [batch0.tokens.shape[1], batch0.tokens.shape[1] - 1],
        "all_columns_median_seconds": median(t_before),
        "trimmed_median_seconds": median(t_now),
        "gain": 1 - median(t_now) / median(t_before),
    }

    # 4. Where the step's time goes: forward (both losses), forward + backward, the Adam update.
    set_lora_arrays(model, init)
    loss_and_grad = dual_loss_and_grad(model, layer, cfg.cls_weight)
    _, grads = loss_and_grad(batch0)
    mx.eval(grads)
    parts_t: dict[str, list[float]] = {"forward": [], "forward_backward": [], "adam_update": []}
    opt = adam(model, cfg.learning_rate)
    for r in range(args.rounds + 2):
        times = {
            "forward": timed(lambda: mx.eval(dual_loss(lens, batch0, layer, cfg.cls_weight))),
            "forward_backward": timed(lambda: mx.eval(loss_and_grad(batch0))),
            "adam_update": timed(lambda: (opt.update(model, grads),
                                          mx.eval(model.trainable_parameters(), opt.state))),
        }
        if r >= 2:
            for k, v in times.items():
                parts_t[k].append(v)
    out["breakdown_median_seconds"] = {k: median(v) for k, v in parts_t.items()}
    out["other_processes_cpu_fraction"] = watch.fraction()
    out["load_after"] = list(os.getloadavg())
    return out


def with_extra_column(batch: Batch) -> Batch:
    """The batch with one pad column appended: dual_loss, which drops the last column, then forwards every
    original column (the step as it was before the last column was dropped)."""
    pad = mx.zeros((batch.size, 1), dtype=batch.tokens.dtype) + batch.tokens[:, -1:]
    return Batch(mx.concatenate([batch.tokens, pad], axis=1), *(getattr(batch, f) for f in BATCH_FIELDS[1:]))


# ---------------------------------------------------------------- output


def report(r: dict) -> None:
    print(f"model {r['model']}, batch {r['batch_shape'][0]} x {r['batch_shape'][1]} tokens "
          f"({r['real_tokens']} real), BLAS {r['blas']}, mlx {r['mlx']}")
    kind, other = ("compiled", "not compiled") if r["step_compiled"] else ("not compiled", "compiled")
    print(f"  (a) our dual-reward step      {r['step_seconds'] * 1e3:8.1f} ms  (median of {r['rounds']}; {kind}, "
          f"as train() runs it; {other}: {r['other_step_seconds'] * 1e3:.1f} ms)")
    print(f"  (b) mlx-lm default_loss step  {r['peer_step_seconds'] * 1e3:8.1f} ms  same tokens")
    if r.get("peer_mlx_lm_padded_step_seconds"):
        print(f"  (b') same, mlx-lm's padding   {r['peer_mlx_lm_padded_step_seconds'] * 1e3:8.1f} ms  "
              f"(padded to {1 + 32 * ((r['batch_shape'][1] + 31) // 32)} columns)")
    print(f"  (c) sgemm {r['sgemm_shape']}  {r['sgemm_gflops']:8.1f} GFLOP/s  "
          f"(square 1024^3: {r['square_sgemm_gflops']:.1f} GFLOP/s)")
    print(f"  speedup a/b {r['speedup_vs_mlx_lm']:.2f}x (FLOP bound {r['flop_bound_speedup']:.2f}x)"
          + (f", vs mlx-lm padding {r['speedup_vs_mlx_lm_padded']:.2f}x" if r.get("speedup_vs_mlx_lm_padded")
             else ""))
    print(f"  our step {r['step_gflop']:.2f} GFLOP -> {r['achieved_gflops']:.1f} GFLOP/s, MFU {r['mfu']:.1%} of (c) "
          f"({r['mfu_vs_square_sgemm']:.1%} of square sgemm)")
    print(f"  {r['tokens_per_second']:.0f} tokens/s, peak memory {r['peak_memory_mb']:.0f} MB "
          f"(peer {r['peer_peak_memory_mb']:.0f} MB, max RSS {r['maxrss_mb']:.0f} MB)")
    print(f"  peer loss == our answer loss at the same adapters: |diff| = {r['peer_loss_equals_answer_loss']:.1e}")
    if "full_run_seconds" in r:
        print(f"  full default run {r['full_run_seconds']:.1f} s (steps {r['full_run_train_step_seconds']:.1f} s, "
              f"training wall {r['full_run_train_wall_seconds']:.1f} s, evaluation {r['full_run_eval_seconds']:.1f} s)")
        print(f"  snapshot overhead {r['snapshot_overhead']:.1%} (100 steps, every 25 vs 0: "
              f"{r['snapshot_on_seconds']:.1f} s vs {r['snapshot_off_seconds']:.1f} s; "
              f"{r['snapshot_seconds_each']:.2f} s per snapshot; projected for 500 steps "
              f"{r['snapshot_overhead_default_projected']:.1%})")
        print(f"  snapshots timed in place: {r['full_run_snapshot_seconds_median']:.2f} s each in the full run, "
              f"{r['full_run_snapshot_overhead']:.1%} of its step time (20 after step 0)")
    if "run_steps" in r:
        ttr = r["time_to_readable_seconds"]
        print(f"  default run, first {r['run_steps']} steps as the CLI trains them: "
              f"{r['run_seconds_per_step_with_snapshots'] * 1e3:.1f} ms per step with snapshots "
              f"(steps alone {r['run_step_seconds_mean'] * 1e3:.1f} ms; mlx-lm's step on the same batches "
              f"{r['run_peer_step_seconds_mean'] * 1e3:.1f} ms): {r['run_speedup_with_snapshots']:.2f}x "
              f"({r['run_speedup_steps_only']:.2f}x steps alone)")
        snaps = r["run_snapshot_seconds"]
        print(f"  snapshots in place: {median(snaps):.2f} s each, {r['run_snapshot_overhead']:.1%} of the steps' time")
        print("  time-to-readable: " + (f"{ttr:.1f} s to step {r['steps_to_readable']} (full-vocab top-1 >= "
                                        f"{r['readable_threshold']:g} at the classifier layer)" if ttr is not None
                                        else f"not readable within {r['run_steps']} steps"))
    print("  " + missed("speedup_vs_mlx_lm", r["speedup_vs_mlx_lm"], TARGETS["speedup_vs_mlx_lm"], True))
    if "run_steps" in r:
        print("  " + missed("speedup_with_snapshots", r["run_speedup_with_snapshots"],
                            TARGETS["speedup_with_snapshots"], True))
        print("  " + missed("snapshot_overhead", r["run_snapshot_overhead"], TARGETS["snapshot_overhead"], False)
              + " [in place, default run]")
    print("  " + missed("mfu", r["mfu"], TARGETS["mfu"], True))
    if "full_run_seconds" in r:
        print("  " + missed("snapshot_overhead", r["snapshot_overhead"], TARGETS["snapshot_overhead"], False)
              + " [100 steps, on vs off]")
        print("  " + missed("snapshot_overhead", r["full_run_snapshot_overhead"], TARGETS["snapshot_overhead"], False)
              + " [timed in place in the default run: 20 snapshots / 500 steps]")
        print("  " + missed("full_run_seconds", r["full_run_seconds"], TARGETS["full_run_seconds"], False))
    busy = max(r["other_processes_cpu_fraction"], r.get("full_other_processes_cpu_fraction", 0.0))
    if "run_steps" in r:
        print(f"  other processes used {r['run_other_processes_cpu_fraction']:.0%} of the cores during the run")
    print(f"  other processes used {r['other_processes_cpu_fraction']:.0%} of the cores while (a)-(c) ran"
          + (f", {r['full_other_processes_cpu_fraction']:.0%} during --full" if "full_run_seconds" in r else "")
          + (" (a quiet machine)" if busy < 0.05 else " -- NOT a quiet machine: the slower figures are pessimistic"))
    print(f"  {load_note()} now, this benchmark's own threads included (at start: {r['load_before'][0]:.2f})")


def write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload) + "\n")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def sweep(args) -> None:
    rows = []
    for model in ("embedded", "tinyllama-1.1b-random"):
        for bs in (4, 8, 16):
            out = OUT_DIR / "scaling" / f"{model}_b{bs}.json"
            rounds = args.rounds if model == "embedded" else max(3, args.rounds // 4)
            cmd = [sys.executable, __file__, "--model", model, "--batch-size", str(bs), "--rounds", str(rounds),
                   "--warmup", "2", "--no-peer-padded", "--out", str(out)]
            print("+", " ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, check=True)
            rows.append(json.loads(out.read_text()))
    (OUT_DIR / "scaling.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print("\n| model | batch | step ms | mlx-lm ms | speedup | tokens/s | GFLOP/s | sgemm GFLOP/s | MFU | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch_shape'][0]}x{r['batch_shape'][1]} | {r['step_seconds'] * 1e3:.0f} | "
              f"{r['peer_step_seconds'] * 1e3:.0f} | {r['speedup_vs_mlx_lm']:.2f}x | {r['tokens_per_second']:.0f} | "
              f"{r['achieved_gflops']:.1f} | {r['sgemm_gflops']:.1f} | {r['mfu']:.0%} | {r['peak_memory_mb']:.0f} |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="also time a full default run and the snapshot overhead")
    p.add_argument("--model", default="embedded",
                   help="embedded, tinyllama-1.1b-random, or a model directory or hub id lazarus_nb.load_model takes")
    p.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    p.add_argument("--rounds", type=int, default=20, help="timed rounds of (a), (b), (c) after warm-up")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first (the peer compiles here)")
    p.add_argument("--no-peer-padded", action="store_true", help="skip (b') the peer on mlx-lm's padding")
    p.add_argument("--run-steps", type=int, default=100,
                   help="steps of the default run timed with snapshots and time-to-readable (0: skip)")
    p.add_argument("--out", type=Path, default=None, help="JSON line output (default runs/bench/train_step.json)")
    p.add_argument("--study", action="store_true", help="measure mx.compile, length bucketing and trimming")
    p.add_argument("--study-steps", type=int, default=60, help="training steps per variant in --study")
    p.add_argument("--cold", action="store_true", help="--study with an empty mx.compile kernel cache")
    p.add_argument("--sweep", action="store_true", help="model size x batch size table (subprocesses)")
    args = p.parse_args(argv)
    info = blas.info()
    if not info.optimized:
        print("warning: mlx runs on the reference BLAS (no optimized BLAS was preloaded): expect 10-20x slower")
    if args.sweep:
        return sweep(args)
    if args.study:
        r = study(args)
        print(json.dumps(r, indent=1))
        return write(args.out or OUT_DIR / ("study_cold.json" if args.cold else "study.json"), r)
    try:
        r = measure(args)
    except LazarusError as exc:  # e.g. a --model that does not load: one sentence, no traceback
        raise SystemExit(f"bench: {exc}") from None
    report(r)
    default = args.model == "embedded" and args.batch_size == TrainConfig().batch_size
    name = "train_step.json" if default else f"train_step_{Path(args.model).name}_b{args.batch_size}.json"
    write(args.out or OUT_DIR / name, r)


if __name__ == "__main__":
    main()
