"""Activation patching as a workflow step (docs/science.md "Activation patching"): is the readable word used? The
pairs (drawn from a run's held-out problems, or given), the base model's patching and, with adapters, the adapted
model's; and one pair at one (layer, position) for the notebook's widget.

mlx-lm (through ``model.lora``) is imported inside the functions, so importing this module stays cheap and the CLI's
preflight can draw and check the pairs before anything heavy loads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from lazarus_nb.data.labels import target_words
from lazarus_nb.data.pairs import Pair, draw_pairs, parse_pair
from lazarus_nb.data.tokens import ClassTokens, class_tokens_from_ids, encode_pair, resolve_class_tokens
from lazarus_nb.errors import SettingError
from lazarus_nb.measure.patch_summary import slots_of, summarise
from lazarus_nb.measure.patching import patch_pairs, view_runs
from lazarus_nb.model.layers import check_layers
from lazarus_nb.model.lens import LogitLens
from lazarus_nb.model.load import LoadedModel
from lazarus_nb.results.patching import ModelPatching, PairPatch, PatchingResult
from lazarus_nb.run.steps import Log, quiet
from lazarus_nb.show import patching_text
from lazarus_nb.train import checkpoint
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.record import RunRecord

NUM_PAIRS = 24
"""Pairs a patching run draws by default: two per ordered operation pair."""

BASE, ADAPTED = "base model", "adapted model"


def patching_pairs(config: TrainConfig | None = None, texts: Sequence[str] | None = None, num_pairs: int = NUM_PAIRS,
                   seed: int = 0) -> list[Pair]:
    """The pairs to patch: ``texts`` (each ``"SOURCE|TARGET"``), else ``num_pairs`` drawn with ``seed`` from the
    held-out problems of ``config`` (default: the default run's). One sentence for a bad pair or count."""
    if texts:
        return [parse_pair(t) for t in texts]
    train, heldout = (config or TrainConfig()).split()
    return draw_pairs(heldout, train, num_pairs, seed)


def _class_tokens(loaded: LoadedModel, config: TrainConfig, record: RunRecord | None) -> ClassTokens:
    """A checkpoint's class tokens exactly as trained (docs/science.md "Class tokens"), else the label map's words."""
    if record is not None and record.class_tokens:
        return class_tokens_from_ids(loaded.tokenizer, record.class_tokens)
    return resolve_class_tokens(loaded.tokenizer, target_words(config.label_map))


def _texts(loaded: LoadedModel, ids: Sequence[int]) -> list[str]:
    """Each token as the text it stands for (``" ="``), as the lens grid writes them."""
    return [loaded.tokenizer.decode([t]) for t in ids]


def _labels(loaded: LoadedModel) -> list[str]:
    """The models ``loaded`` holds: the base, and the adapted one when it carries adapters."""
    from lazarus_nb.model.lora import adapters  # mlx-lm: imported when called (see the module doc)

    return [BASE, ADAPTED] if adapters(loaded.model) else [BASE]


def _as_model(loaded: LoadedModel, label: str) -> AbstractContextManager:
    """Inside: ``loaded.model`` computes the base model (adapters off) or the adapted one."""
    from lazarus_nb.model.lora import disabled  # mlx-lm: imported when called (see the module doc)

    return disabled(loaded.model) if label == BASE else nullcontext()


def activation_patching(
    loaded: LoadedModel,
    config: TrainConfig | None = None,
    pairs: Sequence[Pair | str] | None = None,
    num_pairs: int = NUM_PAIRS,
    seed: int = 0,
    adapter: str | Path | None = None,
    every_position: bool = False,
    record: RunRecord | None = None,
    log: Log = quiet,
) -> PatchingResult:
    """Patch every block output at every prompt position of each pair, on the base model and, when ``loaded``
    carries adapters (or ``adapter``, a checkpoint directory, is loaded onto it here), on the adapted model too.

    ``pairs``: Pair objects or ``"SOURCE|TARGET"`` strings; default ``num_pairs`` drawn with ``seed`` from the
    held-out problems of the run: ``adapter``'s own settings, else ``config`` (default: the default run's). With
    adapters, the lens class at the run's classifier layer is read after every patch (``config`` gives the layer and
    label map of in-memory adapters). ``every_position``: also run the positions whose patch changes nothing.
    ``record``: ``adapter``'s run record when the caller has read it already (None: read here)."""
    started = time.perf_counter()
    if adapter is not None:
        record = record or checkpoint.read_adapter_record(adapter)
        checkpoint.load_adapter(loaded, adapter, record)
    cfg = (record.train if record is not None else config or TrainConfig()).for_model(loaded.num_layers)
    chosen = patching_pairs(cfg, None, num_pairs, seed) if pairs is None else [
        p if isinstance(p, Pair) else parse_pair(p) for p in pairs]
    ids = [encode_pair(loaded.tokenizer, p, cfg.answer_terminator) for p in chosen]
    lens = LogitLens(loaded.model)
    slots = slots_of(ids)
    labels = _labels(loaded)
    adapted = ADAPTED in labels
    tokens = _class_tokens(loaded, cfg, record) if adapted else None
    layer = cfg.classifier_layer if adapted else None
    sources = [cfg.labels.target(p.source) for p in chosen] if adapted else None
    for line in patching_text.settings(loaded.name, cfg, chosen, pairs is None, seed, labels, layer):
        log(line)
    models = []
    for label in labels:
        t0 = time.perf_counter()
        with _as_model(loaded, label):
            patched = patch_pairs(lens, ids, layer, tokens.ids if tokens else (), every_position)
        models.append(ModelPatching(label, patched, summarise(ids, patched, slots, sources)))
        log(patching_text.progress_line(label, len(ids), loaded.num_layers, time.perf_counter() - t0))
    return PatchingResult(
        loaded.name, loaded.num_layers, cfg, seed, pairs is None, chosen, ids,
        [_texts(loaded, i.target_prompt) for i in ids], layer, tokens, sources,
        [cfg.labels.target(p.target) for p in chosen] if adapted else None,
        str(adapter) if adapter is not None else None, models, every_position, time.perf_counter() - started)


def patch_pair(
    loaded: LoadedModel,
    pair: Pair | str,
    layer: int,
    position: int,
    config: TrainConfig | None = None,
    base: bool = False,
    top_k: int = 5,
) -> PairPatch:
    """One pair (a Pair or ``"SOURCE|TARGET"``) with block ``layer``'s output at prompt ``position`` copied from the
    source run, beside the clean target and source runs: the lens's top tokens and class at the classifier layer
    (``config``'s, default the default run's) at the last prompt position, the greedy answers, and P(source answer) /
    P(target answer). ``base``: on the base model when ``loaded`` carries adapters. Well under a second on SmolLM2
    (the settings are not checked in full, ``TrainConfig.check`` draws the data: a widget calls this often)."""
    cfg = config or TrainConfig()
    read_at = loaded.default_classifier_layer if cfg.classifier_layer is None else cfg.classifier_layer
    check_layers([read_at], loaded.num_layers, "classifier_layer")
    chosen = pair if isinstance(pair, Pair) else parse_pair(pair)
    ids = encode_pair(loaded.tokenizer, chosen, cfg.answer_terminator)
    check_layers([layer], loaded.num_layers, "layer")
    if not 0 <= position < len(ids.target_prompt):
        raise SettingError("position", f"{{field}} {position} is outside the prompt's positions "
                                       f"0..{len(ids.target_prompt) - 1}")
    tokens = _class_tokens(loaded, cfg, None)
    lens = LogitLens(loaded.model)
    label = BASE if base or ADAPTED not in _labels(loaded) else ADAPTED
    with _as_model(loaded, label):
        runs = view_runs(lens, loaded.tokenizer, chosen, ids, read_at, tokens.ids, (layer, position), top_k)
    return PairPatch(loaded.name, label, chosen, _texts(loaded, ids.target_prompt), layer, position, ids.first,
                     read_at, list(tokens.words), *runs)
