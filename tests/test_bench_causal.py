"""``python -m bench --causal DIR`` on the tiny llama: it times the ablation (2 random subspaces here, 20 by
default) and the steering test with their default settings, prints the figures and writes them."""

from __future__ import annotations

import json

import mlx.core as mx
import pytest

from bench.__main__ import main
from lazarus_nb.train.config import TrainConfig


@pytest.mark.slow
def test_bench_times_ablation_and_steering(tiny_path, tmp_path, capsys):
    from lazarus_nb.model import lora
    from lazarus_nb.model.load import load_model
    from lazarus_nb.train import checkpoint
    from lazarus_nb.train.loop import prepare

    loaded = load_model(str(tiny_path))
    state = prepare(loaded, TrainConfig(steps=1))  # the default split: 64 balanced held-out problems exist
    mx.random.seed(0)
    for m in lora.adapters(loaded.model).values():
        m.lora_b = 0.2 * mx.random.normal(m.lora_b.shape)
    checkpoint.save(tmp_path / "ckpt", loaded, state)
    out = tmp_path / "causal.json"
    main(["--causal", str(tmp_path / "ckpt"), "--model", str(tiny_path), "--causal-draws", "2", "--out", str(out)])
    r = json.loads(out.read_text())
    ablation, steering = r["runs"]
    assert ablation["test"] == "ablation" and ablation["draws"] == 2 and ablation["problems"] == 64
    assert set(ablation["per_model_seconds"]) == {"base", "adapted"} and ablation["seconds"] > 0
    assert steering["test"] == "steering" and steering["alphas"] == 9 and steering["prompts"] == 25
    assert set(steering["per_model_seconds"]) == {"base", "adapted"}
    printed = capsys.readouterr().out
    assert "ablation" in printed and "steering" in printed and "load average" in printed
