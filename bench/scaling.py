"""``--sweep``: the model-size x batch-size table of docs/performance.md, each cell a ``python -m bench`` of its own
(a fresh process, so one cell's memory and compiled kernels do not weigh on the next); ``runs/bench/scaling.jsonl``."""

import argparse
import json
import subprocess
import sys

from bench.machine import OUT_DIR, ROOT


def sweep(args: argparse.Namespace) -> None:
    rows = []
    for model in ("embedded", "tinyllama-1.1b-random"):
        for bs in (4, 8, 16):
            out = OUT_DIR / "scaling" / f"{model}_b{bs}.json"
            rounds = args.rounds if model == "embedded" else max(3, args.rounds // 4)
            cmd = [sys.executable, "-m", "bench", "--model", model, "--batch-size", str(bs), "--rounds", str(rounds),
                   "--warmup", "2", "--no-peer-padded", "--out", str(out)]
            print("+", " ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, check=True, cwd=ROOT)
            rows.append(json.loads(out.read_text()))
    (OUT_DIR / "scaling.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print("\n| model | batch | step ms | mlx-lm ms | speedup | tokens/s | GFLOP/s | sgemm GFLOP/s | MFU | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch_shape'][0]}x{r['batch_shape'][1]} | {r['step_seconds'] * 1e3:.0f} | "
              f"{r['peer_step_seconds'] * 1e3:.0f} | {r['speedup_vs_mlx_lm']:.2f}x | {r['tokens_per_second']:.0f} | "
              f"{r['achieved_gflops']:.1f} | {r['sgemm_gflops']:.1f} | {r['mfu']:.0%} | {r['peak_memory_mb']:.0f} |")
