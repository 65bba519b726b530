"""``--reader``: the reader-only baseline (``run.reader.reader_baseline``, what ``lazarus-nb introspect reader`` runs)
on the embedded model with the default settings (500 steps of 8, rank 16, snapshots every 25), at each layer set of
``--reader-layers`` (default: the classifier layer alone, then every layer). Figures are printed, never asserted:
the wall time, the hidden states' share of it, and the held-out top-1 it reached, with the load the other processes
put on the machine meanwhile."""

import lazarus_nb  # noqa: I001  (first: preloads the optimized BLAS before anything imports mlx)

import os
import time

from bench.machine import Contamination, load_note
from lazarus_nb.model.layers import default_classifier_layer
from lazarus_nb.run.reader import reader_baseline
from lazarus_nb.train.config import TrainConfig


def measure(layer_sets: list[str]) -> dict:
    """One reader baseline per entry of ``layer_sets`` ("16", "8,16", "all", or "classifier": the default classifier
    layer), on one loaded model."""
    loaded = lazarus_nb.load_model()
    out: dict = {"model": loaded.name, "config": "TrainConfig()", "runs": []}
    for spec in layer_sets:
        if spec == "all":
            layers = list(range(loaded.num_layers))
        elif spec == "classifier":
            layers = [default_classifier_layer(loaded.num_layers)]
        else:
            layers = [int(v) for v in spec.split(",")]
        watch, load_before = Contamination(), os.getloadavg()[0]
        t0 = time.perf_counter()
        result = reader_baseline(loaded, TrainConfig(), layers)
        wall = time.perf_counter() - t0
        best = max(range(len(layers)), key=lambda i: result.heldout.top1_acc[i])
        out["runs"].append({
            "layers": len(layers),
            "seconds": wall,
            "hidden_seconds": result.hidden_seconds,
            "train_and_score_seconds": wall - result.hidden_seconds,
            "steps": len(result.losses),
            "best_layer": layers[best],
            "best_heldout_top1": result.heldout.top1_acc[best],
            "other_processes_cpu_share": watch.fraction(),
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
        })
    return out


def report(r: dict) -> None:
    print(f"reader-only baseline, {r['model']}, default settings ({r['config']}: 500 steps of 8, rank 16)")
    for run in r["runs"]:
        layers = f"{run['layers']} layer{'s' if run['layers'] != 1 else ''}"
        print(f"  {layers:>9}  {run['seconds']:7.1f} s  (hidden states {run['hidden_seconds']:.1f} s, training and "
              f"scoring {run['train_and_score_seconds']:.1f} s; best held-out top-1 {run['best_heldout_top1']:.0%} at "
              f"L{run['best_layer']}; other processes took {run['other_processes_cpu_share']:.0%} of the CPU)")
    print(f"  {load_note()}")
