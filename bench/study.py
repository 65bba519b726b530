"""``--study``: what the step's design choices buy on this machine, each measured against its alternative over
the same batches, stepped in turn so load changes hit both alike (writes ``runs/bench/study.json``):

1. ``mx.compile``: our step plain and compiled from the same adapters, losses and times, the compile cost and
   the steps it takes to pay off (``--cold``: with an empty on-disk kernel cache, as on a new machine);
2. length bucketing: the schedule's batches against the same samples sorted fully by length (pad fraction, time);
3. the unread last column: the step as it is against the same batch with one more column forwarded;
4. where the step's time goes: forward, forward + backward, the Adam update.
"""

import lazarus_nb  # noqa: I001  (first: preloads the optimized BLAS before anything imports mlx)

import argparse
import os
import tempfile
import time
from statistics import median

import mlx.core as mx
import numpy as np

from bench.first_batch import BATCH_FIELDS, adam, pad_fraction
from bench.machine import LOAD_AT_START, Contamination, timed
from lazarus_nb.data.tokens import Batch
from lazarus_nb.measure.losses import dual_loss
from lazarus_nb.model.lens import LogitLens
from lazarus_nb.model.lora import lora_arrays, set_lora_arrays
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.loop import batch_for, dual_loss_and_grad, make_step, prepare, schedule, token_lengths


def study(args: argparse.Namespace) -> dict:
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
    lengths = np.array(token_lengths(tok, state.train_set, cfg.answer_terminator))
    by_len = picked[np.argsort(lengths[picked], kind="stable")]
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
