"""Command-line argument parsing: the one-line-error parser, the value parsers (integers, layer specs, prompt
lists, ``--classes``) and the training options built from :class:`~lazarus_nb.train.config.TrainConfig`'s fields.
Only syntax is parsed here; ranges and meaning are checked by their owners (``config``, ``data``) and the
preflight (:mod:`lazarus_nb.app.preflight`).
"""

from __future__ import annotations

import argparse
import re
import types
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from lazarus_nb.errors import LazarusError, SettingError
from lazarus_nb.model.layers import check_layers
from lazarus_nb.train.config import TrainConfig


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block) and exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # `--learning-rate -1e-3` is a value, not an option: argparse only knows -1 and -0.5 as numbers (3.13
        # uses this pattern too), and the user would not see the range check otherwise
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str) -> None:  # type: ignore[override]
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def int_at_least(lo: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = integer(text)
        if value < lo:
            what = "a positive integer" if lo == 1 else f"an integer >= {lo}"
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got '{text}'") from None


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got '{text}'") from None


@dataclass(frozen=True)
class LayerSpec:
    """A parsed ``--layers`` value: ``layers`` None means all."""

    text: str
    layers: tuple[int, ...] | None

    def ids(self, num_layers: int, field: str = "layers") -> list[int]:
        """The layer ids, checked against a model with ``num_layers`` blocks (``field``: the option's dest)."""
        if self.layers is None:
            return list(range(num_layers))
        check_layers(self.layers, num_layers, field)
        return list(self.layers)


_LAYER_SPEC = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def parse_layer_spec(text: str) -> LayerSpec:
    """``all``, ``N``, ``N,M``, ``a-b`` (and combinations like ``0-3,7``) -> sorted unique layer ids.

    Only the syntax is checked here; :meth:`LayerSpec.ids` checks the range against the model.
    """
    s = text.replace(" ", "")
    if s.lower() == "all":
        return LayerSpec(text, None)
    if not _LAYER_SPEC.match(s):
        raise LazarusError(f"layers must be 'all', N, N,M or a-b (e.g. '0-3,7'), got '{text}'")
    out: set[int] = set()
    for part in s.split(","):
        if "-" in part:
            a, b = (int(v) for v in part.split("-"))
            if a > b:
                raise LazarusError(f"layer range '{part}' is empty: write it as low-high, e.g. '{b}-{a}'")
            out.update(range(a, b + 1))
        else:
            out.add(int(part))
    return LayerSpec(text, tuple(sorted(out)))


def layer_spec_arg(text: str) -> LayerSpec:
    try:
        return parse_layer_spec(text)
    except LazarusError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _read_at_file(ref: str, option: str) -> list[str]:
    """``@file``: one prompt per line (only the line break is removed, trailing spaces are kept)."""
    path = Path(ref[1:])
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LazarusError(f"{option}: cannot read prompt file '{path}': {exc.strerror or exc}") from None
    return [line for line in text.splitlines() if line.strip()]


def split_prompts(text: str, option: str) -> list[str]:
    """``"7 * 8 = |12 * 5 = "`` -> ``["7 * 8 = ", "12 * 5 = "]``; ``@file`` reads one prompt per line.

    The prompt text is kept exactly (a trailing space is part of the prompt); only the empty or
    whitespace-only pieces that a leading/trailing/doubled ``|`` leaves are dropped.
    """
    if text.startswith("@") and len(text) > 1:
        return _read_at_file(text, option)
    return [p for p in text.split("|") if p.strip()]


def parse_classes(values: Sequence[str]) -> dict[str, list[str]]:
    """``--classes NAME:PROMPT|PROMPT|...`` (repeated) -> {name: prompts}, validated (at least 2 classes)."""
    fmt = "the format is NAME:PROMPT|PROMPT|..., e.g. \"multiply:7 * 8 = |12 * 5 = \""
    classes: dict[str, list[str]] = {}
    for value in values:
        if ":" not in value:
            raise LazarusError(f"--classes '{value}' has no ':' between class name and prompts; {fmt}")
        name, _, rest = value.partition(":")
        name = name.strip()
        if not name:
            raise LazarusError(f"--classes '{value}' has an empty class name; {fmt}")
        if name in classes:
            raise LazarusError(f"class '{name}' is given twice in --classes; put all its prompts in one value")
        prompts = split_prompts(rest, f"--classes {name}")
        if not prompts:
            raise LazarusError(f"--classes '{value}' has no prompts; {fmt}")
        classes[name] = prompts
    if len(classes) < 2:
        only = f" ('{next(iter(classes))}')" if classes else ""
        raise LazarusError(f"--classes gives only one class{only}; a probe needs at least two (repeat --classes)")
    for name, prompts in classes.items():
        if len(prompts) < 2:
            raise LazarusError(
                f"class '{name}' has 1 prompt; cross-validation needs at least 2 prompts per class"
            )
    return classes


def option(dest: str) -> str:
    """The option of an argparse dest (a TrainConfig field, ``output``, ``layers``...): ``cls_weight`` ->
    ``--cls-weight``. Every option of the CLI is spelled so, which lets an error about a field name it."""
    return "--" + dest.replace("_", "-")


def _parser_for(kind: Any) -> tuple[Callable[[str], Any], str]:
    """argparse type and metavar for a TrainConfig field type (``int``, ``float``, ``list[int] | None``...).
    Only the syntax is parsed here; the ranges are TrainConfig.check's."""
    if isinstance(kind, types.UnionType):
        kind = next(t for t in get_args(kind) if t is not type(None))
    if get_origin(kind) is list:
        return layer_spec_arg, "SPEC"
    return {int: (integer, "N"), float: (number, "F"), str: (str, "WORD"), bool: (_bool, "true|false")}[kind]


def _bool(text: str) -> bool:
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"must be true or false, got '{text}'")
    return value


def add_train_options(p: argparse.ArgumentParser, grid: Collection[str] = ()) -> None:
    """The options of a command that trains: one per TrainConfig field (``add_config_options``), ``--log-every``
    and ``--no-answers``."""
    add_config_options(p, grid)
    p.add_argument("--log-every", type=int_at_least(1), default=100, metavar="N",
                   help="print a row of the step table every N steps (default: 100)")
    p.add_argument("--no-answers", action="store_true",
                   help="skip the answer half before/after: greedy answer accuracy, answer NLL and the "
                        "general-text KL and perplexity (faster)")


def add_config_options(p: argparse.ArgumentParser, grid: Collection[str] = (),
                       only: Collection[str] | None = None) -> None:
    """One option per TrainConfig field (name, type, default and help from the dataclass), as mlx-lm's
    ``TrainingArgs`` and tuned-lens's dataclass CLI do; the default stays None, so a resumed run can tell
    which options were given. Field metadata: ``choices``; ``metavar``; ``const``, the value of the option given
    without one (an optional-value option, e.g. ``--stop-when-readable [ACC]``). The fields in ``grid`` (a sweep's)
    take one or more values; ``only``: just these fields (a command that uses some of the settings)."""
    hints = get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        if only is not None and f.name not in only:
            continue
        parse, metavar = _parser_for(hints[f.name])
        default = "" if f.default is None else f" (default: {f.default})"
        choices, const = f.metadata.get("choices"), f.metadata.get("const")
        sweep = f.name in grid
        nargs: dict[str, Any] = {"nargs": "+"} if sweep else {} if const is None else {"nargs": "?", "const": const}
        if const is not None and not sweep:
            default += f" (alone: {const}; default: off)"
        p.add_argument(option(f.name), dest=f.name, type=parse, metavar="{" + ",".join(choices) + "}" if choices
                       else f.metadata.get("metavar", metavar), choices=choices,
                       help=f.metadata["help"] + default + ("; one or more values" if sweep else ""), **nargs)


def grid_config(args: argparse.Namespace, grid: Collection[str]) -> tuple[TrainConfig, dict[str, list[Any]]]:
    """A sweep's options (``add_train_options(p, grid)``): the base TrainConfig of the other options, and the
    value lists of the ``grid`` fields given."""
    axes = {k: list(getattr(args, k)) for k in grid if getattr(args, k) is not None}
    base, _ = train_config(argparse.Namespace(**{**vars(args), **dict.fromkeys(grid)}))
    return base, axes


def parse_values(name: str, text: str) -> list[Any]:
    """``"0 0.2, 0.4"`` -> ``[0.0, 0.2, 0.4]``: a TrainConfig field's values typed in one box (a notebook panel),
    parsed as its command-line option parses each value; one sentence for a bad value."""
    parse, _ = _parser_for(get_type_hints(TrainConfig)[name])
    try:
        return [parse(v) for v in text.replace(",", " ").split()]
    except argparse.ArgumentTypeError as exc:
        raise SettingError(name, f"{{field}}: {exc}") from None


def train_config(args: argparse.Namespace, base: TrainConfig | None = None) -> tuple[TrainConfig, dict[str, Any]]:
    """The TrainConfig of the options, and the options the user gave (the rest keeps ``base``'s values,
    TrainConfig's defaults if None; so do the fields the command has no option for)."""
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    values = dict(given)
    if "lora_layers" in values:  # "all" is None
        spec = values.pop("lora_layers")
        values["lora_layers"] = None if spec.layers is None else list(spec.layers)
    return replace(base or TrainConfig(), **values), given
