"""``compile_step``: train() compiles its step only when asked (off by default), and the compiled run trains the
same."""

from __future__ import annotations

from dataclasses import replace

import lazarus_nb
from lazarus_nb import train as train_mod
from lazarus_nb.config import TrainConfig
from lazarus_nb.profiles import SMOKE_TRAIN
from lazarus_nb.train import prepare, train


def run(path: str, monkeypatch, compile_step: bool) -> tuple[list[bool], list[tuple[float, float, float]]]:
    """(the compile flag of every make_step train() built, the per-step losses) of a 4-step run."""
    flags: list[bool] = []
    real = train_mod.make_step

    def recording(*a, **k):
        flags.append(k["compile"])
        return real(*a, **k)

    with monkeypatch.context() as m:
        m.setattr(train_mod, "make_step", recording)
        loaded = lazarus_nb.load_model(path)
        state = train(loaded, prepare(loaded, replace(SMOKE_TRAIN, snapshot_every=0, compile_step=compile_step)))
    return flags, [(s.total, s.cls_loss, s.ans_loss) for s in state.history.steps]


def test_the_compiled_step_is_opt_in_and_trains_the_same(tiny_model_dir, monkeypatch):
    assert TrainConfig().compile_step is False  # the gain is not confirmed and a cold compile costs ~24 s
    path = str(tiny_model_dir("llama"))
    plain_flags, plain = run(path, monkeypatch, False)
    compiled_flags, compiled = run(path, monkeypatch, True)
    assert plain_flags == [False] and compiled_flags == [True]
    assert compiled == plain  # bit-identical losses, step by step
