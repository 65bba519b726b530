"""The figures, printed: (a)-(c) of ``step``, the default run of ``default_run``, ``--full``'s of ``full_run``, and
every target (docs/performance.md) with how far it is missed."""

from statistics import median

from bench.machine import load_note

TARGETS = {"speedup_vs_mlx_lm": 1.12, "speedup_with_snapshots": 1.12, "mfu": 0.5, "snapshot_overhead": 0.10,
           "full_run_seconds": 300.0}


def missed(name: str, value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    if ok:
        return f"target {name} {'>=' if higher_is_better else '<='} {target:g}: met ({value:.3g})"
    factor = target / value if higher_is_better else value / target
    return (f"target {name} {'>=' if higher_is_better else '<='} {target:g}: MISSED ({value:.3g}; "
            f"{factor:.2f}x short)")


def report(r: dict) -> None:
    """Print the measurement ``r`` (the JSON line ``__main__`` writes) as the benchmark's report."""
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
