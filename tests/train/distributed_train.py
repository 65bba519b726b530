"""One dual-reward run of a (tiny) model through ``workflow.run_dual_reward``, data-parallel when started by
``mlx.launch -n N`` (single-process otherwise): what tests/train/test_distributed.py launches. Every rank writes what
it saw to ``OUT/rank{r}.json`` (losses, snapshots, stop reason, whether it wrote the checkpoint); rank 0 writes the
checkpoint to ``OUT/ckpt``.

``--top1 'A;B'``: script the snapshots' full-vocab top-1 (every layer) instead of measuring it, rank r reading the
comma list ``[A, B][min(r, 1)]`` in order, so ranks can be made to disagree about readability (rank 0 decides).

    python tests/train/distributed_train.py MODEL OUT '{"steps": 3, "num_samples": 16, ...}' [--top1 'A;B']
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lazarus_nb  # noqa: F401  (before mlx: the optimized BLAS first)
from lazarus_nb import load_model
from lazarus_nb.run import steps as workflow
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.history import Snapshot
from lazarus_nb.train.loop import Trainer


def scripted_snapshots(values: list[float]):
    calls: list[int] = []

    def snapshot(lens, loaded, state):
        acc = values[len(calls)]
        calls.append(state.step)
        n = loaded.num_layers
        return Snapshot(state.step, [0.5] * n, [acc] * n, [acc] * n)

    return snapshot


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("out", type=Path)
    p.add_argument("config", help="TrainConfig fields as a JSON object")
    p.add_argument("--top1", help="scripted snapshot accuracies: 'rank 0 list;other ranks list'")
    args = p.parse_args()
    group = workflow.data_parallel_group()
    rank, size = (0, 1) if group is None else (group.rank(), group.size())
    trainer = Trainer()
    if args.top1:
        lists = args.top1.split(";")
        trainer = Trainer(snapshot=scripted_snapshots([float(v) for v in lists[min(rank, len(lists) - 1)].split(",")]))
    result = workflow.run_dual_reward(load_model(args.model), TrainConfig(**json.loads(args.config)),
                                      output=args.out / "ckpt", force=True, answers=False, group=group,
                                      trainer=trainer)
    d = result.to_dict()
    (args.out / f"rank{rank}.json").write_text(json.dumps({
        "rank": rank, "size": size, "ranks": d["ranks"], "history": d["history"], "snapshots": d["snapshots"],
        "stop_reason": d["stop_reason"], "step": result.state.step, "checkpoint": d["checkpoint"]}))


if __name__ == "__main__":
    main()
