"""Training-step benchmark (``make bench``): our dual-reward step against mlx-lm's ``default_loss`` step.

``python -m bench`` prints every figure and writes them as one JSON line (``runs/bench/train_step.json``). Each job
is a short module of its own, sharing the package's code:

  step.py         (a) our step, (b) mlx-lm's, (b') mlx-lm's on its own padding, (c) sgemm; speedup, MFU, memory
  flops.py        the FLOP model MFU counts
  default_run.py  the first ``--run-steps`` steps of a default run with snapshots, against mlx-lm's step on the
                  same batches; the snapshot overhead in place, time-to-readable
  full_run.py     ``--full``: a full default run, and the snapshot overhead (100 steps, snapshots on vs off)
  study.py        ``--study``: mx.compile, length bucketing, the unread last column, the step's breakdown
  scaling.py      ``--sweep``: the model-size x batch-size table
  reader.py       ``--reader``: the reader-only baseline at one layer and at every layer
  causal.py       ``--causal DIR``: the ablation and steering tests with the checkpoint DIR
  patching.py     ``--patching``: activation patching, the default 24 pairs on the base and the adapted model
  first_batch.py, mlx_lm_peer.py, machine.py, report.py: the batch, the peer, timing, the printed report

``--model PATH`` benchmarks any model ``lazarus_nb.load_model`` can load (the tests run it on a tiny one).
"""

import lazarus_nb  # noqa: F401, I001  (first: preloads the optimized BLAS before anything imports mlx)

import argparse
import json
import os
from pathlib import Path

from bench import causal, default_run, full_run, patching, reader, scaling, step, study
from bench.machine import OUT_DIR, write
from bench.report import report
from lazarus_nb import LazarusError
from lazarus_nb.model import blas
from lazarus_nb.run.ablation import DRAWS
from lazarus_nb.train.config import TrainConfig


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
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
    p.add_argument("--reader", action="store_true",
                   help="time the reader-only baseline on the embedded model with the default settings instead")
    p.add_argument("--reader-layers", nargs="+", default=["classifier", "all"], metavar="SPEC",
                   help="--reader's layer sets, each a run: classifier (the default classifier layer), all, N or "
                        "N,M (default: classifier all)")
    p.add_argument("--causal", metavar="DIR", type=Path,
                   help="time the ablation and steering tests (default settings) on the embedded model (or --model) "
                        "with the checkpoint DIR instead")
    p.add_argument("--causal-draws", type=int, default=DRAWS, metavar="N",
                   help=f"--causal's random subspaces per model (default: {DRAWS}, the ablation's default)")
    p.add_argument("--patching", action="store_true",
                   help="time activation patching on the embedded model (the default 24 pairs, base and adapted)")
    p.add_argument("--patching-adapter", metavar="DIR", default=None,
                   help="--patching's adapter (default: step-0 adapters of the default run, the same cost)")
    return p


def measure(args: argparse.Namespace) -> dict:
    """Every figure of one benchmark run: the step, then (a real model) the default run, then ``--full``'s."""
    r = step.measure(args)
    if args.run_steps and args.model != "tinyllama-1.1b-random":
        r.update(default_run.measure(args.model, args.run_steps))
    if args.full and args.model == "embedded":
        r.update(full_run.measure())
    r["load_after"] = list(os.getloadavg())
    return r


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if not blas.info().optimized:
        print("warning: mlx runs on the reference BLAS (no optimized BLAS was preloaded): expect 10-20x slower")
    if args.sweep:
        return scaling.sweep(args)
    if args.causal:
        r = causal.measure(args.causal, "smollm2-135m" if args.model == "embedded" else args.model, args.causal_draws)
        causal.report(r)
        return write(args.out or OUT_DIR / "causal.json", r)
    if args.patching:
        r = patching.measure(args.patching_adapter)
        patching.report(r)
        return write(args.out or OUT_DIR / "patching.json", r)
    if args.reader:
        r = reader.measure(args.reader_layers)
        reader.report(r)
        return write(args.out or OUT_DIR / "reader.json", r)
    if args.study:
        r = study.study(args)
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
