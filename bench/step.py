"""One training step, in one process, after warm-up, alternating round by round on the same token batch:

  (a) our dual-reward training step: ``train.make_step``, the step ``train.train`` loops over (both losses from
      one trunk forward, logits only where a loss reads them, finiteness check, Adam update), compiled or not
      as ``TrainConfig.compiles`` decides for the config (the other variant is timed too), on the batch step 1
      of a default run trains on (``first_batch``);
  (b) the peer: mlx-lm's LoRA step with the same adapters on the same tokens (``mlx_lm_peer``); also (b') the
      same step on the batch padded the way mlx-lm's own ``iterate_batches`` pads (to 1 + a multiple of 32);
  (c) a plain fp32 sgemm of the model's dominant matmul shape (tokens x hidden x intermediate: the MLP), the
      machine's limit for this work; plus a square 1024^3 sgemm for context.

It reports medians, the speedup, our step's MFU (``flops``), tokens per second and peak memory.
"""

import lazarus_nb  # noqa: F401, I001  (first: preloads the optimized BLAS before anything imports mlx)

import argparse
import time
from statistics import median

import mlx.core as mx
from mlx_lm.tuner.trainer import default_loss

from bench.first_batch import adam, build, lengths_of
from bench.flops import arch, step_flops
from bench.machine import LOAD_AT_START, Contamination, maxrss_mb, peak_mb, sgemm_fn, timed
from bench.mlx_lm_peer import mlx_lm_padded, peer_lengths, peer_step_fn
from lazarus_nb.measure.losses import dual_loss
from lazarus_nb.model import blas
from lazarus_nb.model.lens import LogitLens
from lazarus_nb.train.loop import make_step


def measure(args: argparse.Namespace) -> dict:
    """(a), (b), (b') unless ``args.no_peer_padded``, (c): ``args.warmup`` untimed rounds, ``args.rounds`` timed."""
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
    return {
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
        "flops": dict(flops),
        "mlx": mx.__version__,
        "load_before": LOAD_AT_START,
        "other_processes_cpu_fraction": other_cpu,  # of all cores, during (a)-(c); > 0.05: a busy machine
        "bench_seconds": time.perf_counter() - t0,
    }
