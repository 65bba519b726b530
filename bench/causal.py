"""``--causal DIR``: the ablation and steering tests (``run.ablation.subspace_ablation`` and ``run.steering.steering``,
what ``lazarus-nb introspect ablate`` and ``introspect steer`` run) on the embedded model with the checkpoint DIR, with
their default settings: 20 random subspaces (``--causal-draws``) on 64 held-out problems; one pair (add -> multiply) at
9 alphas. Figures
are printed, never asserted: each wall time, per model, with the load the other processes put on the machine
meanwhile."""

import lazarus_nb  # noqa: I001  (first: preloads the optimized BLAS before anything imports mlx)

import os
import time
from pathlib import Path

from bench.machine import Contamination, load_note
from lazarus_nb.run.ablation import DRAWS, subspace_ablation
from lazarus_nb.run.steering import steering


def measure(adapter: str | Path, model: str = "smollm2-135m", draws: int = DRAWS) -> dict:
    """One ablation (``draws`` random subspaces) and one steering run, each on a freshly loaded model (both load the
    adapter themselves)."""
    out: dict = {"model": model, "adapter": str(adapter), "runs": []}
    for name in ("ablation", "steering"):
        loaded = lazarus_nb.load_model(model)
        watch, load_before = Contamination(), os.getloadavg()[0]
        t0 = time.perf_counter()
        if name == "ablation":
            a = subspace_ablation(loaded, adapter, draws)
            detail = {"draws": a.draws, "problems": a.problems, "text_positions": a.text_positions,
                      "per_model_seconds": {m.label: m.seconds for m in (a.base, a.adapted)}}
        else:
            s = steering(loaded, adapter)
            detail = {"alphas": len(s.alphas), "prompts": len(s.pairs[0].prompts), "train_prompts": s.train_prompts,
                      "per_model_seconds": s.model_seconds}
        out["runs"].append({"test": name, "seconds": time.perf_counter() - t0, **detail,
                            "other_processes_cpu_share": watch.fraction(), "load_before": load_before,
                            "load_after": os.getloadavg()[0]})
    return out


def report(r: dict) -> None:
    print(f"ablation and steering, {r['model']} with {r['adapter']}, default settings")
    for run in r["runs"]:
        models = ", ".join(f"{k} {v:.1f} s" for k, v in run["per_model_seconds"].items())
        what = (f"{run['draws']} random subspaces + the class subspace per model on {run['problems']} problems and "
                f"{run['text_positions']} text positions" if run["test"] == "ablation" else
                f"{run['alphas']} alphas on {run['prompts']} prompts, means over {sum(run['train_prompts'].values())} "
                "training prompts")
        print(f"  {run['test']:>9}  {run['seconds']:7.1f} s  ({models}; {what}; other processes took "
              f"{run['other_processes_cpu_share']:.0%} of the CPU)")
    print(f"  {load_note()}")
