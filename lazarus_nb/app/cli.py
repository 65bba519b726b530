"""The ``lazarus-nb`` command line: ``info``, ``fetch``, ``introspect {dual-reward, classifier, logit-lens, reader,
ablate, steer}``, ``demo`` (the four workflow steps headless) and ``sweep`` (a grid of dual-reward runs). The parser
and the error policy live here; the parsing of values is :mod:`lazarus_nb.app.cli_args`'s, the checks of a request
:mod:`lazarus_nb.app.preflight`'s, the commands :mod:`lazarus_nb.app.commands`'s.

* Human text goes to stdout; with ``--json`` the result (strict JSON) goes to stdout and the text to stderr.
* Bad input is ONE sentence on stderr (``error: ...``), exit code 2, before anything is written; the preflight
  (options, output paths, the model's layer count from its config.json) runs before the model loads, so it is
  instant. A setting's error names its option (``--cls-weight``). Unexpected exceptions: one line, exit code 1
  (the traceback with ``LAZARUS_NB_DEBUG=1``).
* Ctrl-C during training keeps the last good checkpoint, prints the resume command and exits with 130.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import lazarus_nb  # noqa: F401  (already imported as our package; keeps the BLAS preload first explicitly)
from lazarus_nb.app.cli_args import (
    Parser,
    add_config_options,
    add_train_options,
    int_at_least,
    integer,
    layer_spec_arg,
    number,
    option,
    parse_layer_spec,
)
from lazarus_nb.app.commands import (
    PROG,
    cmd_ablate,
    cmd_classifier,
    cmd_demo,
    cmd_dual_reward,
    cmd_fetch,
    cmd_info,
    cmd_logit_lens,
    cmd_patch,
    cmd_reader,
    cmd_steer,
    cmd_sweep,
)
from lazarus_nb.data.prompts import CLASSES, DEMO_PROBE_PROMPTS, PROBE_PROMPTS
from lazarus_nb.errors import LazarusError, SettingError
from lazarus_nb.measure.steering import POSITIONS
from lazarus_nb.measure.subspace import SUBSPACES
from lazarus_nb.model.load import DEFAULT_MODEL, EMBEDDED
from lazarus_nb.run.ablation import DRAWS, MODES, PROBLEMS
from lazarus_nb.run.patching import NUM_PAIRS
from lazarus_nb.run.steering import ALPHAS, DEFAULT_PAIR
from lazarus_nb.train.config import DEMO_TRAIN, READER_FIELDS
from lazarus_nb.train.grid import GRID_FIELDS


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


def _add_figure(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--figure", metavar="PATH", help=f"also draw {what} to PATH (.png, .svg or .pdf; its directory "
                                                    "must exist)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Watch an internal classifier become readable: probe, logit lens, dual-reward LoRA, verify.",
        epilog=f"Examples:\n  {PROG} info\n  {PROG} introspect classifier -m {DEFAULT_MODEL} --prompt-set words\n"
               f"  {PROG} introspect logit-lens -m {DEFAULT_MODEL} --prompts \"7 * 8 = |23 + 45 = \" "
               "--targets multiply --targets add\n"
               f"  {PROG} introspect dual-reward -m {DEFAULT_MODEL} --steps 500 -o runs/dual\n"
               f"  {PROG} introspect logit-lens -m {DEFAULT_MODEL} --adapter runs/dual --layers all\n"
               f"  {PROG} introspect reader -m {DEFAULT_MODEL} --layers 8,16 --label-map operand\n"
               f"  {PROG} introspect ablate --adapter runs/dual --draws 20\n"
               f"  {PROG} introspect steer --adapter runs/dual --from-op add --to-op multiply\n"
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

    intro = sub.add_parser("introspect", help="dual-reward | classifier | logit-lens | reader | ablate | steer",
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

    p = _command(isub, "reader", cmd_reader, "reader-only baseline: a trained low-rank reader per layer on the frozen "
                                             "model, read like the logit lens")
    _add_model(p)
    p.add_argument("--layers", type=layer_spec_arg, default=parse_layer_spec("all"), metavar="SPEC",
                   help="layers to train a reader at: all, N, N,M or a-b (default: all)")
    add_config_options(p, only=READER_FIELDS)
    _add_common(p, output_file=True)

    p = _command(isub, "ablate", cmd_ablate, "subspace ablation: remove the class-readout subspace at the classifier "
                                             "layer, against random subspaces")
    _add_model(p, "the adapter's model, else ")
    p.add_argument("--adapter", required=True, metavar="DIR", help="the dual-reward checkpoint to test (its held-out "
                   "problems, class tokens and classifier layer)")
    p.add_argument("--draws", type=integer, default=DRAWS, metavar="N",
                   help=f"random subspaces of the same dimension (default: {DRAWS})")
    p.add_argument("-l", "--layer", type=integer, metavar="N", help="layer to ablate (default: the adapter's "
                   "classifier layer)")
    p.add_argument("--problems", type=integer, default=PROBLEMS, metavar="N",
                   help=f"held-out problems scored, class-balanced, a multiple of 4 (default: {PROBLEMS})")
    p.add_argument("--subspace", choices=SUBSPACES, default="full", help="full: span of the class tokens' g*u_w "
                   "(every class logit's linear part); centred: their differences (what the class-restricted argmax "
                   "reads) (default: full)")
    p.add_argument("--mode", choices=MODES, default="project", help="project: the component set to 0; mean: set to "
                   "the mean over training problems' positions (default: project)")
    p.add_argument("--seed", type=int_at_least(0), default=0, metavar="S", help="seed of the random subspaces "
                   "(default: 0)")
    _add_figure(p, "the random distribution of each cost with the class subspace's value marked, base and adapted")
    _add_common(p, output_file=True)

    p = _command(isub, "steer", cmd_steer, "steering: add alpha * (mean h[to-op] - mean h[from-op]) to from-op prompts")
    _add_model(p, "the adapter's model with --adapter, else ")
    p.add_argument("--adapter", metavar="DIR", help="also steer this checkpoint's adapted model (its data, class "
                   "tokens and classifier layer; without it: the base model on the default run's)")
    p.add_argument("--from-op", choices=CLASSES, metavar="OP", help=f"operation whose held-out prompts are steered, "
                   f"one of {', '.join(CLASSES)} (default: {DEFAULT_PAIR[0]})")
    p.add_argument("--to-op", choices=CLASSES, metavar="OP", help=f"operation they are steered toward (default: "
                   f"{DEFAULT_PAIR[1]})")
    p.add_argument("--all-pairs", action="store_true", help="every ordered pair of different operations")
    p.add_argument("--alphas", type=number, nargs="+", metavar="A", help="multiples of the vector (default: "
                   f"{' '.join(f'{a:g}' for a in ALPHAS)})")
    p.add_argument("-l", "--layer", type=integer, metavar="N", help="layer the vector is added at (default: the "
                   "classifier layer, where the lens class is read)")
    p.add_argument("--positions", choices=POSITIONS, default="last", help="add it at the last prompt token (where "
                   "the means are taken and the lens reads the class) or at every prompt token (default: last)")
    _add_figure(p, "P(to-op answer), P(from-op answer) and the lens class against alpha, base and adapted")
    _add_common(p, output_file=True)

    p = _command(isub, "patch", cmd_patch, "activation patching: one block output at one position copied from a "
                                           "source prompt's run into a target's, at every layer and position")
    _add_model(p, "the adapter's model with --adapter, else ")
    p.add_argument("--adapter", metavar="DIR",
                   help="also patch the adapted model (this checkpoint, loaded from disk) beside the base model, and "
                        "read the lens class at its classifier layer; pairs come from its run's held-out problems")
    p.add_argument("--pairs", action="append", metavar="SOURCE|TARGET",
                   help="a source and a target prompt 'a OP b = ' that differ only in the operator, e.g. "
                        "\"7 * 8 = |7 + 8 = \" (repeatable; default: --num-pairs drawn from held-out problems)")
    p.add_argument("--num-pairs", type=integer, metavar="N",
                   help=f"pairs drawn from the held-out problems, balanced over the 12 ordered operation pairs "
                        f"(default: {NUM_PAIRS})")
    p.add_argument("--seed", type=int_at_least(0), default=0, metavar="S", help="seed of the drawn pairs (default: 0)")
    _add_figure(p, "the layer x position heatmaps, the base model beside the adapted one,")
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


def message(exc: LazarusError, args: argparse.Namespace) -> str:
    """The sentence of a refused request, a setting named as the option the user typed: a field that is one of
    the command's argparse dests is written as its option (``cls_weight`` -> ``--cls-weight``), any other as
    it is."""
    if isinstance(exc, SettingError):
        return exc.render(lambda field: option(field) if hasattr(args, field) else field)
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    warnings.formatwarning = _format_warning  # one line per warning, no source excerpt
    try:
        return int(args.func(args) or 0)
    except LazarusError as exc:
        print(f"error: {' '.join(message(exc, args).split())}", file=sys.stderr, flush=True)
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
