"""A run's settings as a typed dataclass (no mlx import: the CLI builds its options from it and checks them before
any model is loaded).

:class:`TrainConfig`: the training settings. Every field carries its help text in ``metadata["help"]``, as mlx-lm's
``TrainingArgs`` does, so the defaults and their explanations live here and nowhere else; ``lazarus-nb ... --help``
and the training panel read them. :meth:`TrainConfig.check` holds every range rule. The saved run is
:class:`lazarus_nb.train.record.RunRecord`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from lazarus_nb.data.labels import DESCRIPTIONS, LABEL_MAPS, LabelMap
from lazarus_nb.data.prompts import CLASSES, TERMINATORS, Sample, train_heldout_split
from lazarus_nb.errors import SettingError
from lazarus_nb.model.layers import check_layers, default_classifier_layer


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


READABLE = 0.9
"""Full-vocab top-1 accuracy at which the classifier counts as readable (``train.History.steps_to_readable``), and
the ``--stop-when-readable`` threshold when the flag is given alone."""


STOP_STREAK = 2
"""Consecutive readable snapshots after which ``stop_when_readable`` stops a run: one alone could be a lucky draw
of the small snapshot set."""


COMPILE_CHOICES: tuple[str, ...] = ("auto", "always", "never")
"""When ``train`` compiles its step (``TrainConfig.compiles``)."""


COMPILE_MIN_STEPS = 300
"""``compile_step="auto"`` compiles a run with at least this many steps to go. The compiled step is a little faster,
but the first compiled run on a machine spends seconds in g++ (mlx then keeps the kernels on disk): a run this long
repays the cold build, a shorter one may not (the figures: docs/performance.md, ``make bench``). A run that stops
when readable is not counted as long: it usually ends within the first hundred steps."""


@dataclass
class TrainConfig:
    steps: int = _opt(500, "optimizer steps")  # the original tool's default
    # "layer": a block id of the model (the training panel offers a slider over the model's layers)
    classifier_layer: int | None = field(default=None, metadata={
        "help": "layer whose logit lens must emit the class word (default: int(0.55 * layers))", "layer": True})
    cls_weight: float = _opt(0.4, "weight of the classification loss, in [0, 1]: "
                                  "total = w * classification + (1 - w) * answer")
    learning_rate: float = _opt(5e-4, "Adam learning rate")
    num_samples: int = _opt(800, "training problems, balanced over the 4 operations")
    heldout_samples: int = _opt(100, "held-out evaluation problems, disjoint from training")
    lora_rank: int = _opt(16, "LoRA rank r")
    # mlx-lm's default scale 20 stalled at chance with lr 5e-4 (docs/results.md)
    lora_scale: float = _opt(2.0, "LoRA output multiplier")
    lora_layers: list[int] | None = _opt(None, "blocks whose V/O projections get adapters (default: all)")
    batch_size: int = _opt(8, "problems per step")
    seed: int = _opt(0, "data split, batch order and adapter init")
    snapshot_every: int = _opt(25, "logit-lens snapshot interval in steps, 0 = first and last only")
    # small: snapshots are overhead
    snapshot_size: int = _opt(32, "fixed class-balanced held-out problems scored at every snapshot (a multiple "
                                  "of 4; fewer when the held-out set is smaller), and as many training problems")
    checkpoint_every: int = _opt(100, "checkpoint interval in steps when a checkpoint is written, 0 = at the end only")
    answer_terminator: str = field(default="eos", metadata={
        "help": "what ends the answer target: eos (the tokenizer's end-of-sequence token, scored by the answer "
                "loss; greedy answers stop there) or none", "choices": TERMINATORS})
    # Textbook Adam (Kingma & Ba): mlx's Adam defaults to no bias correction, which makes the first steps
    # ~3x larger than the learning rate says (docs/science.md "Optimiser")
    adam_bias_correction: bool = _opt(True, "Adam with bias correction (textbook Adam; mlx's default is off)")
    compile_step: str = field(default="auto", metadata={
        "help": "compile the training step with mx.compile (the same losses, a faster step; the first compiled "
                "run on a machine spends seconds in g++: docs/performance.md): always, never, or auto (runs of at "
                f"least {COMPILE_MIN_STEPS} steps that do not stop when readable)", "choices": COMPILE_CHOICES})
    # the control tasks (data.labels, docs/science.md "Control tasks"): what the lens must read for each problem
    label_map: str = field(default="true", metadata={
        "help": "what the lens at the classifier layer must read: " + "; ".join(
            f"{name}: {text}" for name, text in DESCRIPTIONS.items()) + " (the last three are controls)",
        "choices": LABEL_MAPS})
    # Off by default, so a run does all its steps (the original's semantics). "const": the value of the option
    # given without one (cli_args makes such a field an optional-value option).
    stop_when_readable: float | None = field(default=None, metadata={
        "help": "stop once two consecutive lens snapshots (see --snapshot-every) read full-vocab top-1 >= ACC at the "
                "classifier layer on the snapshot set", "const": READABLE, "metavar": "ACC"})

    def check(self, num_layers: int | None = None) -> None:
        """Every rule on the settings, one sentence per problem (:class:`SettingError` on the field). Layer ranges
        are checked when ``num_layers`` is known."""
        def positive(v: float) -> bool:
            return math.isfinite(v) and v > 0  # also rejects nan and inf

        checks = [
            (self.steps > 0, "steps", f"must be a positive integer, got {self.steps}"),
            (0.0 <= self.cls_weight <= 1.0, "cls_weight", f"must be in [0, 1], got {self.cls_weight}"),
            (positive(self.learning_rate), "learning_rate", f"must be a positive number, got {self.learning_rate}"),
            (self.num_samples >= 4, "num_samples", f"must be at least 4 (one per class), got {self.num_samples}"),
            (self.heldout_samples >= 4, "heldout_samples", f"must be at least 4 (one per class), got "
                                                           f"{self.heldout_samples}"),
            (self.lora_rank > 0, "lora_rank", f"must be a positive integer, got {self.lora_rank}"),
            (positive(self.lora_scale), "lora_scale", f"must be a positive number, got {self.lora_scale}"),
            (self.lora_layers is None or len(self.lora_layers) > 0, "lora_layers", "must name at least one layer"),
            (self.batch_size > 0, "batch_size", f"must be a positive integer, got {self.batch_size}"),
            (self.seed >= 0, "seed", f"must be >= 0, got {self.seed}"),
            (self.snapshot_every >= 0, "snapshot_every", f"must be >= 0, got {self.snapshot_every}"),
            (self.snapshot_size >= 4 and self.snapshot_size % 4 == 0, "snapshot_size",
             f"must be a multiple of 4 (the snapshot set is class-balanced), got {self.snapshot_size}"),
            (self.answer_terminator in TERMINATORS, "answer_terminator",
             f"must be one of {', '.join(TERMINATORS)}, got {self.answer_terminator!r}"),
            (self.compile_step in COMPILE_CHOICES, "compile_step",
             f"must be one of {', '.join(COMPILE_CHOICES)}, got {self.compile_step!r}"),
            (self.label_map in LABEL_MAPS, "label_map", f"must be one of {', '.join(LABEL_MAPS)}, got "
                                                        f"{self.label_map!r}"),
            (self.checkpoint_every >= 0, "checkpoint_every", f"must be >= 0, got {self.checkpoint_every}"),
            (self.stop_when_readable is None or 0 < self.stop_when_readable <= 1,  # also rejects nan
             "stop_when_readable", f"must be an accuracy in (0, 1], got {self.stop_when_readable}"),
            # the stop rule reads the held-out snapshot set, where the memorisation control has nothing to learn
            (self.stop_when_readable is None or self.label_map != "problem", "stop_when_readable",
             "cannot be used with the problem label map: it reads held-out problems, which have no learnable "
             "class under that control (it would never stop)"),
        ]
        for ok, name, message in checks:
            if not ok:
                raise SettingError(name, "{field} " + message)
        try:  # can the data be drawn? (pure Python, ~10 ms)
            train_heldout_split(self.num_samples, self.heldout_samples, self.seed)
        except ValueError as exc:
            msg = str(exc).strip().splitlines()[0].rstrip(".")
            raise SettingError("heldout_samples", f"{{field}} {self.heldout_samples} is too large: "
                                                  f"{msg[0].lower() + msg[1:]}") from None
        if num_layers is not None:
            if self.classifier_layer is not None:
                check_layers([self.classifier_layer], num_layers, "classifier_layer")
            check_layers(self.lora_layers or [], num_layers, "lora_layers")

    @property
    def snapshot_count(self) -> int:
        """Problems in each snapshot set: ``snapshot_size``, or as many as the held-out set holds of its smallest
        class, times 4 (a balanced draw gives every class ``heldout_samples // 4`` or one more)."""
        return len(CLASSES) * min(self.snapshot_size // len(CLASSES), self.heldout_samples // len(CLASSES))

    @property
    def labels(self) -> LabelMap:
        """The run's label map, seeded with the run's seed (a control draws its random classes from it)."""
        return LabelMap(self.label_map, self.seed)

    def split(self) -> tuple[list[Sample], list[Sample]]:
        """The run's (train, held-out) problems with their lens targets attached (``data.labels``): the one place
        a run's data is built, so training, evaluation, resume and verify read the same targets."""
        train, heldout = train_heldout_split(self.num_samples, self.heldout_samples, self.seed)
        return self.labels.apply(train), self.labels.apply(heldout)

    def check_ranks(self, ranks: int) -> None:
        """The data-parallel rule: each of ``ranks`` processes takes an equal share of every global batch, so
        ``batch_size`` and the shorter batch that ends an epoch (``num_samples % batch_size`` problems,
        ``data.balanced_batches``) must both split evenly (one sentence otherwise)."""
        rest = self.num_samples % self.batch_size
        if self.batch_size % ranks:
            raise SettingError("batch_size", f"{{field}} {self.batch_size} does not split over {ranks} ranks: "
                                             f"data-parallel training needs a global batch that is a multiple of "
                                             f"{ranks}")
        if rest % ranks:
            raise SettingError("num_samples", f"{{field}} {self.num_samples} leaves a last batch of {rest} problems "
                                              f"each epoch, which does not split over {ranks} ranks; use a multiple "
                                              f"of {ranks}")

    def compiles(self, steps_left: int) -> bool:
        """Whether ``train`` compiles its step for a run with ``steps_left`` steps to go (``compile_step``)."""
        if self.compile_step != "auto":
            return self.compile_step == "always"
        return steps_left >= COMPILE_MIN_STEPS and self.stop_when_readable is None

    def for_model(self, num_layers: int) -> TrainConfig:
        """A checked copy for a model with ``num_layers`` blocks, the classifier layer default filled in."""
        self.check(num_layers)
        layer = default_classifier_layer(num_layers) if self.classifier_layer is None else self.classifier_layer
        return replace(self, classifier_layer=layer, lora_layers=None if self.lora_layers is None
                       else list(self.lora_layers))


READER_FIELDS: tuple[str, ...] = ("steps", "learning_rate", "adam_bias_correction", "num_samples", "heldout_samples",
                                  "lora_rank", "batch_size", "seed", "snapshot_every", "snapshot_size",
                                  "answer_terminator", "label_map")
"""The settings the reader-only baseline shares with a dual-reward run (docs/science.md "Reader-only baseline"): its
data, targets and batch schedule (the terminator is part of the token lengths the batches are bucketed by), rank,
step budget, optimiser and snapshots. The others are about adapters, the answer loss or checkpoints."""


DEMO_TRAIN = TrainConfig(stop_when_readable=READABLE, snapshot_every=10)
"""The demo's training: the default run, stopped at the second consecutive snapshot (every 10 steps) with the
classifier readable. The classifier is readable by step ~40 of 500 (docs/results.md), so the other ~450 steps only
polish it; ``lazarus-nb demo --full`` runs the default 500 steps instead."""
