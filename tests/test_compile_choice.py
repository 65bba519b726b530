"""train() compiles its step for long runs only (``train.compiles``), and the compiled run trains the same."""

from __future__ import annotations

from dataclasses import replace

import lazarus_nb
from lazarus_nb import train as train_mod
from lazarus_nb.profiles import SMOKE_TRAIN
from lazarus_nb.train import prepare, train


def run(path: str, monkeypatch, threshold: int) -> tuple[list[bool], list[tuple[float, float, float]]]:
    """(the compile flag of every make_step train() built, the per-step losses) of a 4-step run."""
    monkeypatch.setattr(train_mod, "COMPILE_FROM_STEPS", threshold)
    flags: list[bool] = []
    real = train_mod.make_step

    def recording(*a, **k):
        flags.append(k["compile"])
        return real(*a, **k)

    with monkeypatch.context() as m:
        m.setattr(train_mod, "make_step", recording)
        loaded = lazarus_nb.load_model(path)
        state = train(loaded, prepare(loaded, replace(SMOKE_TRAIN, snapshot_every=0)))
    return flags, [(s.total, s.cls_loss, s.ans_loss) for s in state.history.steps]


def test_compiles_from_the_threshold():
    assert train_mod.compiles(train_mod.COMPILE_FROM_STEPS)
    assert not train_mod.compiles(train_mod.COMPILE_FROM_STEPS - 1)
    assert train_mod.compiles(500) and not train_mod.compiles(SMOKE_TRAIN.steps)  # default run / smoke profile
    assert not train_mod.compiles(500, stops_early=True)  # the demo's run: readable by step ~50


def test_long_runs_train_compiled_with_the_same_losses(tiny_model_dir, monkeypatch):
    path = str(tiny_model_dir("llama"))
    plain_flags, plain = run(path, monkeypatch, threshold=SMOKE_TRAIN.steps + 1)
    compiled_flags, compiled = run(path, monkeypatch, threshold=SMOKE_TRAIN.steps)
    assert plain_flags == [False] and compiled_flags == [True]
    assert compiled == plain  # bit-identical losses, step by step
