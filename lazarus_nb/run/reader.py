"""The reader-only baseline as a workflow step (docs/science.md "Reader-only baseline"): how readable is the class
without changing the model? With the base model frozen, a low-rank affine reader per layer
(:mod:`lazarus_nb.measure.reader`) is trained on the data, targets, batches, rank and step budget a dual-reward run
with the same settings uses, and read on its held-out and training problems.

mlx-lm (via ``model.lora`` and ``train.loop``) is imported inside :func:`reader_baseline`, so importing this module
stays cheap and the CLI can check a request before it loads anything heavy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import mlx.core as mx

from lazarus_nb.data.labels import target_words
from lazarus_nb.data.prompts import Sample, distinct
from lazarus_nb.data.tokens import resolve_class_tokens
from lazarus_nb.errors import LazarusError, SettingError
from lazarus_nb.measure.evaluate import LensStats, last_token_hidden
from lazarus_nb.measure.reader import Reader, init_reader, params_per_layer, reader_stats, train_reader
from lazarus_nb.model.layers import check_layers
from lazarus_nb.model.lens import LogitLens
from lazarus_nb.model.load import LoadedModel
from lazarus_nb.results.reader import ReaderResult, ReaderSnapshot
from lazarus_nb.run.steps import Log, quiet
from lazarus_nb.show import reader_text
from lazarus_nb.train.config import TrainConfig


def reader_baseline(
    loaded: LoadedModel,
    config: TrainConfig | None = None,
    layers: Sequence[int] | None = None,
    log: Log = quiet,
) -> ReaderResult:
    """Train and read the reader-only baseline at ``layers`` (default: every layer) with the settings of
    ``config`` (default: the default run's; ``train.config.READER_FIELDS`` are the ones it uses).

    Refused in one sentence: a model that carries adapters (the baseline reads the base model), a layer outside
    the model, no layers. The model's weights are never changed."""
    # mlx-lm loads only when a reader is trained (see the module doc)
    from lazarus_nb.model.lora import adapters
    from lazarus_nb.train.loop import batch_plan, snapshot_due, snapshot_sets  # mlx-lm too, through lora

    started = time.perf_counter()
    cfg = (config or TrainConfig()).for_model(loaded.num_layers)
    layers = list(range(loaded.num_layers)) if layers is None else sorted(set(layers))
    if not layers:
        raise SettingError("layers", "{field} must name at least one layer")
    check_layers(layers, loaded.num_layers, "layers")
    if adapters(loaded.model):
        raise LazarusError("this model carries adapters; the reader baseline reads the base model: load a fresh one")
    tokens = resolve_class_tokens(loaded.tokenizer, target_words(cfg.label_map))
    train_set, heldout = cfg.split()  # for_model checked that it can be drawn
    held_snapshot, train_snapshot = snapshot_sets(heldout, train_set, cfg.snapshot_count)
    width = loaded.hidden_size
    for line in reader_text.settings(cfg, layers, params_per_layer(width, cfg.lora_rank)):
        log(line)

    # The model is frozen: every problem's hidden states, once (a problem drawn twice is run once)
    prompts = list(dict.fromkeys(s.prompt for s in [*train_set, *heldout]))
    column = {p: i for i, p in enumerate(prompts)}
    t0 = time.perf_counter()
    hidden = mx.array(last_token_hidden(loaded, prompts, layers=layers))  # no block above the deepest layer
    hidden_seconds = time.perf_counter() - t0
    log(reader_text.hidden_line(len(prompts), len(layers), hidden_seconds))

    def states(samples: Sequence[Sample]) -> mx.array:
        return hidden[:, mx.array([column[s.prompt] for s in samples])]

    lens = LogitLens(loaded.model)

    def stats(reader: Reader, samples: Sequence[Sample]) -> LensStats:
        return reader_stats(lens, reader, states(samples), layers, tokens.ids, [s.target_index for s in samples])

    snapshots: list[ReaderSnapshot] = []
    plain: list[LensStats] = []

    def snapshot(step: int, reader: Reader, loss: float | None) -> None:
        if step == 0:
            plain.append(stats(reader, heldout))  # B = 0: the plain logit lens
        if snapshot_due(step, cfg.steps, cfg.snapshot_every):
            snapshots.append(ReaderSnapshot(step, stats(reader, held_snapshot), stats(reader, train_snapshot)))
            log(reader_text.snapshot_line(snapshots[-1], layers, loss))

    log(reader_text.training_line(len(layers), cfg.steps))
    reader = init_reader(layers, width, cfg.lora_rank, cfg.seed)
    plan = batch_plan(loaded.tokenizer, train_set, cfg)
    reader, losses = train_reader(lens, reader, states(train_set), [tokens.ids[s.target_index] for s in train_set],
                                  plan, cfg.learning_rate, cfg.adam_bias_correction, callback=snapshot)
    return ReaderResult(loaded.name, loaded.num_layers, layers, cfg.classifier_layer, cfg, tokens,
                        params_per_layer(width, cfg.lora_rank), plain[0], stats(reader, heldout),
                        stats(reader, distinct(train_set)), snapshots, losses, time.perf_counter() - started,
                        hidden_seconds)
