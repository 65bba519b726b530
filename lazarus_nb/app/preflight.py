"""The CLI's preflight: every check of a command's request that can run before the model loads, run once, in
one place. Each function takes the parsed options and returns a frozen request that the command passes on as
it is; nothing after it checks the same thing or reads the same file again. Bad input is one sentence
(:class:`~lazarus_nb.errors.LazarusError`, or :class:`~lazarus_nb.errors.SettingError` naming the option's
dest), before mlx-lm is imported and before anything is written.

The model is looked at through its config.json only (``peek_config``): its layer count checks layer options
now; a model whose config.json does not state it has its layers checked once loaded (:meth:`Layers.ids`, and the
trainer's own ``TrainConfig.for_model``).
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lazarus_nb import files
from lazarus_nb.app.cli_args import grid_config, option, parse_classes, split_prompts, train_config
from lazarus_nb.data.pairs import Pair
from lazarus_nb.data.prompts import CANONICAL, CLASSES, DEMO_PROBE_PROMPTS, PROBE_PROMPTS, check_probe_size
from lazarus_nb.errors import LazarusError
from lazarus_nb.model.layers import check_layers, default_classifier_layer
from lazarus_nb.model.load import DEFAULT_MODEL, EMBEDDED, peek_config
from lazarus_nb.run.ablation import check_ablation
from lazarus_nb.run.patching import NUM_PAIRS, patching_pairs
from lazarus_nb.run.request import TrainRequest, train_request
from lazarus_nb.run.steering import ALPHAS, check_steering, pairs_of
from lazarus_nb.train import checkpoint
from lazarus_nb.train.config import DEMO_TRAIN, TrainConfig
from lazarus_nb.train.grid import GRID_FIELDS, Grid, plan
from lazarus_nb.train.record import RunRecord


@dataclass(frozen=True)
class Model:
    """The model a command loads, as its config.json describes it before the load (``{}`` if unreadable)."""

    name: str
    config: Mapping[str, Any]

    @property
    def num_layers(self) -> int | None:
        return self.config.get("num_hidden_layers")


def peek(name: str | None) -> Model:
    """The model ``name`` (the default model if None); an unknown name or path is one sentence here."""
    name = name or DEFAULT_MODEL
    return Model(name, peek_config(name))


@dataclass(frozen=True)
class Layers:
    """The layers a command reads: ``pick(num_layers)`` chooses and checks them for a model; ``known`` is its
    answer for the layer count config.json stated, so the loaded model's layers are not checked again."""

    pick: Callable[[int], list[int]]
    num_layers: int | None
    known: tuple[int, ...] | None

    @classmethod
    def of(cls, pick: Callable[[int], list[int]], model: Model) -> Layers:
        n = model.num_layers
        return cls(pick, n, tuple(pick(n)) if n is not None else None)

    def ids(self, num_layers: int) -> list[int]:
        """The layer ids for the loaded model with ``num_layers`` blocks."""
        if self.known is not None and num_layers == self.num_layers:
            return list(self.known)
        return self.pick(num_layers)


def fetch(args: argparse.Namespace) -> str:
    """``fetch``: the name of an embedded model."""
    if args.name not in EMBEDDED:
        raise LazarusError(f"unknown embedded model '{args.name}'; choose one of: {', '.join(EMBEDDED)}")
    return args.name


@dataclass(frozen=True)
class DualReward:
    model: Model
    train: TrainRequest
    ignored: tuple[str, ...] = ()  # options a continued run does not apply (its settings are its record's)


def dual_reward(args: argparse.Namespace, ranks: int = 1) -> DualReward:
    """``introspect dual-reward``: the settings (or the checkpoint to continue), the model's layer count, the
    checkpoint directory and, under ``mlx.launch``, the ``ranks``."""
    config, given = train_config(args)
    record: RunRecord | None = None
    ignored: tuple[str, ...] = ()
    if args.resume:
        if args.force:
            raise LazarusError("--resume continues a checkpoint and --force starts over; give only one of them")
        if args.output is None:
            raise LazarusError("--resume needs -o DIR, the checkpoint directory to continue")
        record = checkpoint.resumable_record(args.output)
        ignored = tuple(k for k, v in given.items() if k == "lora_layers" or getattr(record.train, k) != v)
    model = peek(args.model or (record.model if record else None))
    request = train_request(config, args.output, args.force, record, model.num_layers,
                            model.config if record else None, ranks)
    return DualReward(model, request, ignored)


def warn_ignored(request: DualReward) -> None:
    """The options a continued run ignores, as one warning."""
    if request.ignored:
        warnings.warn(f"{', '.join(map(option, request.ignored))} ignored: a resumed run keeps the settings in its "
                      "config.json", stacklevel=2)


@dataclass(frozen=True)
class Classifier:
    model: Model
    classes: dict[str, list[str]] | None  # None: the generated set
    layers: Layers


def classifier(args: argparse.Namespace) -> Classifier:
    """``introspect classifier``: the classes (or the size of the generated set), the output file, the layers."""
    classes = parse_classes(args.classes) if args.classes else None
    if classes is None:
        check_probe_size(args.num_prompts)
    if args.output is not None:
        files.check_output(args.output, "file", args.force)
    model = peek(args.model)
    return Classifier(model, classes, Layers.of(args.layers.ids, model))


@dataclass(frozen=True)
class Reader:
    model: Model
    config: TrainConfig
    layers: Layers


def reader(args: argparse.Namespace) -> Reader:
    """``introspect reader``: the settings (checked against the model's layer count), the output file, the layers."""
    config, _ = train_config(args)
    if args.output is not None:
        files.check_output(args.output, "file", args.force)
    model = peek(args.model)
    config.check(model.num_layers)
    return Reader(model, config, Layers.of(args.layers.ids, model))


@dataclass(frozen=True)
class Ablate:
    model: Model
    record: RunRecord  # the adapter's run record (read once)
    layer: int | None  # None: the adapter's classifier layer


def ablate(args: argparse.Namespace) -> Ablate:
    """``introspect ablate``: the settings, the output file and figure, the adapter (a lazarus_nb checkpoint, read
    once and checked against the model), the layer."""
    check_ablation(args.draws, args.problems, args.subspace, args.mode)
    _check_outputs(args)
    record = checkpoint.read_record(args.adapter)
    model = peek(args.model or record.model)
    checkpoint.check_adapter(args.adapter, dict(model.config), record)
    if args.layer is not None and model.num_layers is not None:
        check_layers([args.layer], model.num_layers, "layer")
    return Ablate(model, record, args.layer)


@dataclass(frozen=True)
class Steer:
    model: Model
    record: RunRecord | None  # the adapter's run record (None: no adapter)
    pairs: list[tuple[str, str]]  # (from_op, to_op)
    alphas: list[float]
    layer: int | None  # None: the classifier layer


def steer(args: argparse.Namespace) -> Steer:
    """``introspect steer``: the pairs, the alphas and positions, the output file and figure, the adapter (read once
    and checked against the model), the layer."""
    pairs = pairs_of(args.from_op, args.to_op, args.all_pairs)
    alphas = list(ALPHAS) if args.alphas is None else list(args.alphas)
    check_steering(alphas, args.positions)
    _check_outputs(args)
    record = None
    if args.adapter is None:
        model = peek(args.model)
    else:
        record = checkpoint.read_record(args.adapter)
        model = peek(args.model or record.model)
        checkpoint.check_adapter(args.adapter, dict(model.config), record)
    if args.layer is not None and model.num_layers is not None:
        check_layers([args.layer], model.num_layers, "layer")
    return Steer(model, record, pairs, alphas, args.layer)


def _model_and_adapter(args: argparse.Namespace) -> tuple[Model, RunRecord | None]:
    """``-m`` and ``--adapter``: the model (without ``-m``, the adapter's own) and the adapter's run record (None: no
    adapter, or a plain mlx-lm one), the adapter checked against the model."""
    if args.adapter is None:
        return peek(args.model), None
    record = checkpoint.read_adapter_record(args.adapter)
    model = peek(args.model or (record.model if record else checkpoint.adapter_model(args.adapter)))
    checkpoint.check_adapter(args.adapter, dict(model.config), record)
    return model, record


def _check_outputs(args: argparse.Namespace) -> None:
    """``-o FILE.json`` and ``--figure PATH``: new files (or ``--force``) in existing, writable places."""
    if args.output is not None:
        files.check_output(args.output, "file", args.force)
    if args.figure is not None:
        # matplotlib is imported only when a figure is asked for
        from lazarus_nb.show.figures import check_figure_path

        check_figure_path(args.figure, args.force)


@dataclass(frozen=True)
class Patch:
    model: Model
    record: RunRecord | None  # the adapter's run record (None: no adapter, or a plain mlx-lm one)
    pairs: list[Pair] | None  # the given pairs (None: the run draws num_pairs, which can be drawn)
    num_pairs: int


def patch(args: argparse.Namespace) -> Patch:
    """``introspect patch``: the output file and figure, the adapter (read once and checked against the model), the
    pairs (given, or drawn from the held-out problems of the adapter's run, else of the default run)."""
    if args.pairs and args.num_pairs is not None:
        raise LazarusError("give --pairs or --num-pairs, not both: --num-pairs draws pairs, --pairs names them")
    _check_outputs(args)
    model, record = _model_and_adapter(args)
    config = record.train if record is not None else TrainConfig()
    num_pairs = NUM_PAIRS if args.num_pairs is None else args.num_pairs
    pairs = patching_pairs(config, args.pairs, num_pairs, args.seed)  # drawn pairs: the run draws the same again
    return Patch(model, record, pairs if args.pairs else None, num_pairs)


@dataclass(frozen=True)
class Lens:
    model: Model
    prompts: list[str]
    targets: list[str]
    record: RunRecord | None  # the adapter's run record (None: no adapter, or a plain mlx-lm one)
    layers: Layers


def logit_lens(args: argparse.Namespace) -> Lens:
    """``introspect logit-lens``: prompts, targets, the output file and figure, the adapter (read once and
    checked against the model), the layers."""
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
    _check_outputs(args)
    model, record = _model_and_adapter(args)
    return Lens(model, prompts, targets, record, Layers.of(lambda n: lens_layers(args, n, record), model))


def lens_layers(args: argparse.Namespace, num_layers: int, record: RunRecord | None) -> list[int]:
    """``--layer``, ``--layers``, else the adapter's classifier layer, else int(0.55 * layers); checked."""
    if args.layer is not None:
        check_layers([args.layer], num_layers, "layer")
        return [args.layer]
    if args.layers is not None:
        return args.layers.ids(num_layers)
    if record is not None and 0 <= record.classifier_layer < num_layers:
        return [record.classifier_layer]
    return [default_classifier_layer(num_layers)]


@dataclass(frozen=True)
class Demo:
    model: Model
    config: TrainConfig
    num_prompts: int


def demo(args: argparse.Namespace) -> Demo:
    """``demo``: the results directory, the probe size, the settings (the demo's unless ``--full``)."""
    # run.demo imports matplotlib; the demo draws figures anyway
    from lazarus_nb.run.demo import check_demo_dir

    check_demo_dir(args.output, args.force)
    num_prompts = args.num_prompts or (PROBE_PROMPTS if args.full else DEMO_PROBE_PROMPTS)
    check_probe_size(num_prompts)
    config, _ = train_config(args, base=None if args.full else DEMO_TRAIN)
    model = peek(args.model)
    config.check(model.num_layers)
    return Demo(model, config, num_prompts)


@dataclass(frozen=True)
class Sweep:
    model: Model
    grid: Grid


def sweep(args: argparse.Namespace) -> Sweep:
    """``sweep``: the grid (every run's settings) and, when the layer count is known, what the sweep directory
    holds (a directory it cannot continue is refused before the load)."""
    base, axes = grid_config(args, GRID_FIELDS)
    grid = Grid.of(axes, base)
    model = peek(args.model)
    grid.check(model.num_layers)
    if model.num_layers is not None:
        plan(args.output, grid, model.num_layers, model.config)
    return Sweep(model, grid)
