"""Subspace ablation as a workflow step (docs/science.md "Ablation"): is the readable word used? At the layer (the
adapter's classifier layer by default), the class-readout subspace is removed from block L's output, and the cost to
the answers, to general text and to the lens is set against removing random subspaces of the same dimension, for
the base model (adapters off) and the adapted one; then the adapter's own write up to L is switched off.

mlx-lm (via ``model.lora``) is imported inside :func:`subspace_ablation`, so importing this module stays cheap and
the CLI can check a request before it loads anything heavy.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from lazarus_nb.data.prompts import CLASSES, balanced_subset, distinct
from lazarus_nb.data.tokens import class_tokens_from_ids
from lazarus_nb.errors import LazarusError, SettingError
from lazarus_nb.measure.ablation import TEXT_WINDOWS, LayerScorer, Scores, mean_state
from lazarus_nb.measure.subspace import SUBSPACES, class_basis, dimension, mean_replace, project_out, random_bases
from lazarus_nb.model.hooks import Edit
from lazarus_nb.model.layers import check_layers
from lazarus_nb.model.lens import LogitLens
from lazarus_nb.model.load import LoadedModel
from lazarus_nb.results.ablation import AblationResult, ModelAblation
from lazarus_nb.run.steps import Log, check_heldout, quiet
from lazarus_nb.show import causal_text
from lazarus_nb.train import checkpoint

MODES: tuple[str, ...] = ("project", "mean")
"""How a subspace is removed: its component set to 0 (the orthogonal projection), or to the training mean's."""


DRAWS = 20
"""Random subspaces per model by default: the fewest for which "no draw costs as much" is p = 1/21 < 0.05."""


PROBLEMS = 64
"""Held-out problems scored by default (16 per operation)."""


MEAN_PROBLEMS = 64
"""Distinct training problems per operation whose positions the mean-ablation state averages."""


def check_ablation(draws: int, problems: int, subspace: str, mode: str, text_windows: int | None = None) -> None:
    """The settings' rules, one sentence each (SettingError): at least one draw, a positive multiple of 4 problems,
    a known subspace and mode, at least one general-text window."""
    if draws < 1:
        raise SettingError("draws", f"{{field}} must be at least 1, got {draws}")
    if problems < 4 or problems % len(CLASSES):
        raise SettingError("problems", f"{{field}} must be a positive multiple of {len(CLASSES)} (the scored "
                                       f"problems are class-balanced), got {problems}")
    if subspace not in SUBSPACES:
        raise SettingError("subspace", f"{{field}} must be one of {', '.join(SUBSPACES)}, got {subspace!r}")
    if mode not in MODES:
        raise SettingError("mode", f"{{field}} must be one of {', '.join(MODES)}, got {mode!r}")
    if text_windows is not None and text_windows < 1:
        raise SettingError("text_windows", f"{{field}} must be at least 1 (or None: the whole text), got "
                                           f"{text_windows}")


def subspace_ablation(
    loaded: LoadedModel,
    adapter: str | Path,
    draws: int = DRAWS,
    layer: int | None = None,
    problems: int = PROBLEMS,
    subspace: str = "full",
    mode: str = "project",
    seed: int = 0,
    text_windows: int | None = TEXT_WINDOWS,
    log: Log = quiet,
) -> AblationResult:
    """Load the checkpoint ``adapter`` onto ``loaded`` (a model without adapters) and run the ablation at ``layer``
    (default: the adapter's classifier layer) on ``problems`` class-balanced held-out problems of the adapter's run,
    with ``draws`` random subspaces (seeded by ``seed``; the same draws for both models). ``subspace``: ``"full"``
    (span of the class tokens' g * u_w) or ``"centred"`` (their differences from the mean); ``mode``: ``"project"``
    or ``"mean"`` (``measure.subspace``). The model keeps the adapter afterwards.

    Refused in one sentence: bad settings (``check_ablation``), a layer outside the model, more problems than the
    held-out set has per class, a model that already carries adapters, an adapter of another model, a checkpoint whose
    held-out set cannot be rebuilt."""
    from lazarus_nb.model.lora import adapters, disabled  # mlx-lm loads only when the ablation runs (module doc)

    started = time.perf_counter()
    check_ablation(draws, problems, subspace, mode, text_windows)
    record = checkpoint.read_record(adapter)
    layer = record.classifier_layer if layer is None else layer
    check_layers([layer], loaded.num_layers, "layer")
    if adapters(loaded.model):
        raise LazarusError("this model already carries adapters; load a fresh one: the ablation loads the adapter")
    train_set, heldout = record.train.split()
    check_heldout(record, heldout, adapter)
    try:
        scored = balanced_subset(heldout, problems)
    except ValueError:
        raise SettingError("problems", f"{{field}} {problems} is more than the adapter's held-out set holds "
                                       f"class-balanced ({len(heldout)} problems)") from None
    checkpoint.load_adapter(loaded, adapter, record)
    tokens = class_tokens_from_ids(loaded.tokenizer, record.class_tokens)
    lens = LogitLens(loaded.model)
    basis = class_basis(np.array(lens.readout_directions(tokens.ids)), subspace)
    dim = dimension(subspace, len(tokens.ids))
    bases = random_bases(loaded.hidden_size, dim, draws, seed)
    terminator = record.train.answer_terminator
    problems_per_class = min(sum(s.label == c for s in distinct(train_set)) for c in CLASSES)
    mean_problems = balanced_subset(distinct(train_set), len(CLASSES) * min(MEAN_PROBLEMS, problems_per_class))
    for line in causal_text.ablation_settings(loaded.name, layer, subspace, dim, mode, draws, len(scored), tokens):
        log(line)

    def one(label: str, lower_off: bool) -> tuple[ModelAblation, int]:
        t0 = time.perf_counter()
        scorer = LayerScorer(lens, loaded.tokenizer, scored, tokens, layer, terminator, loaded.context_length,
                             text_windows)
        mean = None
        if mode == "mean":  # the model's own mean state, over training problems
            mean = mean_state(lens, loaded.tokenizer, mean_problems, tokens, layer, terminator)

        def removal(q: np.ndarray) -> Edit:
            return project_out(q) if mean is None else mean_replace(q, mean)

        removed = scorer.score(removal(basis))
        randoms: list[Scores] = []
        for i, q in enumerate(bases):
            randoms.append(scorer.score(removal(q)))
            log(causal_text.draw_line(label, i + 1, draws, randoms[-1], scorer.reference))
        lower = None
        if lower_off:
            with disabled(loaded.model, range(layer + 1)):
                states = scorer.block_states()
            lower = scorer.score(states=states)
        result = ModelAblation(label, scorer.reference, removed, randoms, lower, time.perf_counter() - t0)
        log(causal_text.model_done_line(label, result.seconds))
        return result, scorer.reference_logp.shape[0]

    with disabled(loaded.model):
        base, positions = one("base", lower_off=False)
    adapted, _ = one("adapted", lower_off=True)
    return AblationResult(loaded.name, str(adapter), loaded.num_layers, layer, record.classifier_layer,
                          loaded.hidden_size, subspace, dim, mode, draws, seed, record.train.label_map, tokens,
                          len(scored), positions, base, adapted, time.perf_counter() - started)
