"""Data-parallel training (``mlx.launch -n 2``, ring backend on localhost) against the single-process run.

* The rank pieces of the dual loss average to the global batch's loss exactly, although the ranks hold different
  numbers of answer tokens (in-process, no launch: the arithmetic ``make_step`` relies on).
* ``lazarus-nb introspect dual-reward`` under ``mlx.launch -n 2``: the same losses and the same saved adapter as the
  single-process run of the same global batch (~1e-5); one JSON result and one report (rank 0's).
* Ranks that disagree about readability stop together, at rank 0's decision; only rank 0 writes.
* A global batch that does not split over the ranks: one sentence, before the model loads.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

import lazarus_nb
from lazarus_nb import LazarusError
from lazarus_nb.measure.losses import dual_loss
from lazarus_nb.model.lens import LogitLens
from lazarus_nb.results import training as training_result
from lazarus_nb.run import steps as workflow
from lazarus_nb.train import checkpoint
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.loop import batch_for, prepare, rank_share, schedule

ROOT = Path(lazarus_nb.__file__).resolve().parent.parent
LAUNCH = Path(sys.executable).with_name("mlx.launch")
SCRIPT = Path(__file__).with_name("distributed_train.py")
CONFIG = TrainConfig(steps=3, num_samples=16, heldout_samples=8, snapshot_size=4, lora_rank=4, batch_size=4,
                     snapshot_every=1, learning_rate=1e-2, seed=0)
CLI_ARGS = ["--steps", "3", "--num-samples", "16", "--heldout-samples", "8", "--snapshot-size", "4",
            "--lora-rank", "4", "--batch-size", "4", "--snapshot-every", "0", "--learning-rate", "0.01"]


class Rank2:
    """A stand-in group for the in-process arithmetic: ``rank_share`` only asks rank() and size()."""

    def __init__(self, rank: int):
        self._rank = rank

    def rank(self) -> int:
        return self._rank

    def size(self) -> int:
        return 2


def free_port_pair() -> int:
    """A port p with p and p + 1 free (the ring backend listens on one port per rank)."""
    for _ in range(100):
        port = random.randint(20000, 60000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def launch(*command: object, ranks: int = 2, timeout: float = 120) -> subprocess.CompletedProcess:
    """``mlx.launch -n ranks --python sys.executable COMMAND`` with this checkout importable and the embedded
    model's home (the tiny models use its tokenizer). mlx.launch itself exits 0 even when a rank fails."""
    from lazarus_nb.model.load import home

    env = dict(os.environ, LAZARUS_NB_HOME=str(home()),
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.pop("LAZARUS_NB_DEBUG", None)
    cmd = [str(LAUNCH), "-n", str(ranks), "-p", str(free_port_pair()), "--python", sys.executable, *map(str, command)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def single_process(tiny_path: Path, config: TrainConfig, out: Path) -> training_result.DualRewardResult:
    return workflow.run_dual_reward(lazarus_nb.load_model(str(tiny_path)), config, output=out, answers=False)


def adapter(path: Path) -> dict[str, np.ndarray]:
    with np.load(path / checkpoint.NPZ) as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------- the arithmetic (in-process)


def test_rank_pieces_average_to_the_global_loss(tiny_path):
    loaded = lazarus_nb.load_model(str(tiny_path))
    state = prepare(loaded, CONFIG)
    lens, layer, w = LogitLens(loaded.model), state.classifier_layer, CONFIG.cls_weight
    plan = schedule(loaded.tokenizer, state)
    # a step whose two halves hold different numbers of answer tokens (the case a plain average gets wrong)
    for indices in plan:
        shares = [batch_for(loaded.tokenizer, state, rank_share(indices, Rank2(r))) for r in (0, 1)]
        tokens = [float(b.answer_targets.size) for b in shares]
        if tokens[0] != tokens[1]:
            break
    else:
        pytest.fail("every step splits its answer tokens evenly; the test needs an uneven one")
    assert sorted(i for r in (0, 1) for i in rank_share(indices, Rank2(r))) == sorted(indices)
    expected = [v.item() for v in dual_loss(lens, batch_for(loaded.tokenizer, state, indices), layer, w)]

    import mlx.core as mx

    per_rank = mx.array([len(indices), sum(tokens)]) / 2  # what make_step divides by on each of 2 ranks
    pieces = [[v.item() for v in dual_loss(lens, b, layer, w, per_rank)] for b in shares]
    assert np.allclose(np.mean(pieces, axis=0), expected, rtol=1e-6, atol=1e-6)
    naive = np.mean([[v.item() for v in dual_loss(lens, b, layer, w)] for b in shares], axis=0)
    assert abs(naive[2] - expected[2]) > 1e-4  # averaging the ranks' own answer means would be wrong


@pytest.mark.parametrize("change, ranks, words", [
    ({"batch_size": 6}, 4, "--batch-size 6 does not split over 4 ranks"),
    ({"batch_size": 8, "num_samples": 801}, 2, "--num-samples 801 leaves a last batch of 1 problems"),
])
def test_check_ranks_is_one_sentence(change, ranks, words):
    with pytest.raises(LazarusError) as info:
        replace(TrainConfig(), **change).check_ranks(ranks)
    text = info.value.render(lambda f: "--" + f.replace("_", "-"))
    assert words in text and "\n" not in text
    TrainConfig().check_ranks(8)  # 800 problems in batches of 8: fine on 1, 2, 4, 8 ranks
    replace(TrainConfig(), num_samples=802, batch_size=8).check_ranks(2)  # a last batch of 2 splits over 2


# ---------------------------------------------------------------- under mlx.launch


@pytest.mark.slow  # mlx.launch of 2 training processes
def test_data_parallel_cli_matches_the_single_process_run(tiny_path, tmp_path):
    ckpt = tmp_path / "dp"
    r = launch("--", "-m", "lazarus_nb", "introspect", "dual-reward", "-m", tiny_path, *CLI_ARGS, "--no-answers",
               "--json", "-o", ckpt)
    assert "exited with code" not in r.stderr, r.stderr
    d = json.loads(r.stdout)  # exactly one JSON document: rank 1 prints nothing
    assert d["ranks"] == 2 and d["status"] == "complete" and d["stop_reason"] == "steps"
    assert r.stderr.count("Loading model:") == 1 and "Data-parallel: 2 ranks" in r.stderr

    reference = single_process(tiny_path, replace(CONFIG, snapshot_every=0), tmp_path / "single")
    assert d["config"] == asdict(reference.state.config)
    ref = reference.to_dict()
    assert [h["step"] for h in d["history"]] == [1, 2, 3]
    for key in ("total", "cls_loss", "ans_loss"):
        np.testing.assert_allclose([h[key] for h in d["history"]], [h[key] for h in ref["history"]], atol=1e-5)
    assert ref["history"][0]["total"] != ref["history"][2]["total"]  # training moved: the match is not vacuous
    assert [s["step"] for s in d["snapshots"]] == [s["step"] for s in ref["snapshots"]] == [0, 3]
    for a, b in zip(d["snapshots"], ref["snapshots"]):
        np.testing.assert_allclose(a["prob"], b["prob"], rtol=1e-4, atol=1e-9)
    dp, single = adapter(ckpt), adapter(tmp_path / "single")
    assert dp.keys() == single.keys()
    for k, v in single.items():
        np.testing.assert_allclose(dp[k], v, atol=1e-5, err_msg=k)
    assert max(np.abs(v).max() for k, v in single.items() if k.endswith("_B")) > 1e-3  # B moved off zero
    record = checkpoint.read_record(ckpt)
    assert record.steps_completed == 3 and record.status == "complete" and record.stop_reason == "steps"


@pytest.mark.slow  # mlx.launch of 2 training processes
def test_the_compiled_data_parallel_step_matches_the_single_process_run(tiny_path, tmp_path):
    """``compile_step``: the all-sums stay outside the compiled functions and the counts go in as an input, so
    the compiled data-parallel step gives the single-process (plain step) losses too."""
    r = launch(SCRIPT, tiny_path, tmp_path, json.dumps(asdict(replace(CONFIG, compile_step="always"))))
    assert "exited with code" not in r.stderr, r.stderr + r.stdout
    seen = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1)]
    ref = single_process(tiny_path, CONFIG, tmp_path / "single").to_dict()
    for key in ("total", "cls_loss", "ans_loss"):
        for s in seen:
            np.testing.assert_allclose([h[key] for h in s["history"]], [h[key] for h in ref["history"]], atol=1e-5)
    assert ref["history"][0]["total"] != ref["history"][2]["total"]


@pytest.mark.slow  # mlx.launch of 2 training processes
def test_ranks_stop_together_at_rank_0s_decision(tiny_path, tmp_path):
    """Rank 0 reads two readable snapshots in a row at step 4, rank 1 never does: both stop at step 4."""
    config = replace(CONFIG, steps=8, stop_when_readable=0.9)
    rank0 = "0,0.95,0.5,0.95,0.95,1,1,1,1"
    r = launch(SCRIPT, tiny_path, tmp_path, json.dumps(asdict(config)), "--top1", f"{rank0};{','.join(['0'] * 9)}")
    assert "exited with code" not in r.stderr, r.stderr + r.stdout
    seen = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1)]
    for s in seen:
        assert s["size"] == 2 and s["step"] == 4 and s["stop_reason"] == "readable"
        assert [h["step"] for h in s["history"]] == [1, 2, 3, 4]
        assert [x["step"] for x in s["snapshots"]] == [0, 1, 2, 3, 4]
    assert seen[0]["history"] == seen[1]["history"]  # the same global losses on both ranks
    assert seen[0]["checkpoint"] == str(tmp_path / "ckpt") and seen[1]["checkpoint"] is None  # rank 0 writes
    record = checkpoint.read_record(tmp_path / "ckpt")
    assert record.steps_completed == 4 and record.stop_reason == "readable" and record.train.steps == 8


def test_a_batch_that_does_not_split_is_one_sentence_before_the_model_loads(tiny_path, tmp_path):
    r = launch("--", "-m", "lazarus_nb", "introspect", "dual-reward", "-m", tiny_path, "--batch-size", "3", "-o",
               tmp_path / "run")
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors and set(errors) == {"error: --batch-size 3 does not split over 2 ranks: data-parallel training "
                                      "needs a global batch that is a multiple of 2"}
    assert "Loading model" not in r.stdout + r.stderr and not (tmp_path / "run").exists()
    assert "exited with code 2" in r.stderr
