"""Per-class snapshot values (train.Snapshot.class_prob), reading older histories without them, and the
EmergenceScrubber widget (figures.scrub_figure / emergence_plots.ScrubFigure) on the tiny random llama."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import matplotlib

import lazarus_nb  # noqa: F401  (before anything imports mlx: loads the optimized BLAS first)

matplotlib.use("Agg")

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lazarus_nb import LazarusError, files  # noqa: E402
from lazarus_nb.app.scrubber import MIN_PLAY_MS, PLAY_MS, EmergenceScrubber  # noqa: E402
from lazarus_nb.data.prompts import CLASSES  # noqa: E402
from lazarus_nb.model.hooks import forward_hidden
from lazarus_nb.model.lens import LogitLens  # noqa: E402
from lazarus_nb.run import steps as workflow  # noqa: E402
from lazarus_nb.show.figures import MEAN_LABEL  # noqa: E402
from lazarus_nb.show.plots.emergence import GID_STEP  # noqa: E402
from lazarus_nb.train import checkpoint  # noqa: E402
from lazarus_nb.train.callbacks import TrainingCallback  # noqa: E402
from lazarus_nb.train.history import History, Snapshot, StepLog  # noqa: E402
from lazarus_nb.train.loop import TrainConfig, prepare, snapshot, snapshot_set, train  # noqa: E402

TINY = TrainConfig(steps=3, num_samples=16, heldout_samples=12, snapshot_size=8, lora_rank=4, batch_size=4,
                   snapshot_every=1, learning_rate=1e-2, seed=0)


def _redraws(slot) -> int:
    m = re.fullmatch(r'<span class="lazarus-redraws" data-count="(\d+)" data-title="[^"]*">(\d+)</span>',
                     slot.redraws.value)
    assert m and m[1] == m[2], slot.redraws.value
    return int(m[1])


# ---------------------------------------------------------------- per-class snapshot values


def test_snapshot_class_prob_is_the_mean_own_token_probability_per_class(fresh):
    """Each class's per-layer value is the mean, over the snapshot set's problems of that class, of the softmax
    probability of the class's own token under the lens at the last prompt token: computed here one unpadded
    prompt at a time, in float64, from the lens logits."""
    loaded = fresh()
    state = prepare(loaded, TINY)
    snap = snapshot(LogitLens(loaded.model), loaded, state)
    samples = snapshot_set(state)
    lens = LogitLens(loaded.model)
    probs: dict[str, list[np.ndarray]] = {c: [] for c in CLASSES}
    for s in samples:
        ids = loaded.tokenizer.encode(s.prompt)
        hidden, _ = forward_hidden(loaded.model, mx.array([ids]))
        token = state.class_tokens.ids[CLASSES.index(s.label)]
        per_layer = []
        for h in hidden:
            logits = np.array(lens(h[0, -1]).astype(mx.float32), dtype=np.float64)
            e = np.exp(logits - logits.max())
            per_layer.append(e[token] / e.sum())
        probs[s.label].append(np.array(per_layer))
    assert set(snap.class_prob) == set(CLASSES) and all(probs.values())  # every class is in the snapshot set
    for c in CLASSES:
        np.testing.assert_allclose(snap.class_prob[c], np.mean(probs[c], axis=0), rtol=2e-4)
    # the overall mean is the mean of the classes' means (the snapshot set is class-balanced)
    np.testing.assert_allclose(snap.prob, np.mean([snap.class_prob[c] for c in CLASSES], axis=0), rtol=1e-6)


def test_training_history_and_result_json_carry_class_prob(fresh):
    loaded = fresh()
    result = workflow.run_dual_reward(loaded, replace(TINY, steps=2), answers=False)
    snaps = result.state.history.snapshots
    assert [s.step for s in snaps] == [0, 1, 2]
    assert all(set(s.class_prob) == set(CLASSES) and all(len(v) == loaded.num_layers for v in s.class_prob.values())
               for s in snaps)
    assert snaps[0].class_prob != snaps[-1].class_prob  # training moved them
    as_json = json.loads(files.dumps(result))
    assert [s["class_prob"] for s in as_json["snapshots"]] == [s.class_prob for s in snaps]
    assert History.from_dict(json.loads(json.dumps(result.state.history.to_dict()))) == result.state.history


def _old(history_dict: dict) -> dict:
    """A history.json as written before snapshots kept per-class values."""
    return {**history_dict, "snapshots": [{k: v for k, v in s.items() if k != "class_prob"}
                                          for s in history_dict["snapshots"]]}


def test_old_history_without_class_prob_reads():
    snaps = [Snapshot(0, [0.1, 0.2], [0.25, 0.5], [0.0, 0.0], {"add": [0.1, 0.3]})]
    old = _old(History([0, 1], [StepLog(1, 1.0, 2.0, 0.5, 0.1)], snaps).to_dict())
    assert "class_prob" not in old["snapshots"][0]
    h = History.from_dict(json.loads(json.dumps(old)))
    assert h.snapshots == [Snapshot(0, [0.1, 0.2], [0.25, 0.5], [0.0, 0.0], {})]
    assert h.steps == [StepLog(1, 1.0, 2.0, 0.5, 0.1)]


def test_resume_from_a_checkpoint_whose_history_predates_class_prob(fresh, tmp_path):
    """An old checkpoint (history.json without class_prob) resumes; the new snapshots carry class_prob, the old
    ones stay without, and the scrubber shows empty lines (NaN) at the old steps."""
    loaded = fresh()
    ckpt = tmp_path / "run"
    state = prepare(loaded, TINY)

    class StopAt2(TrainingCallback):
        def on_step(self, log, state):
            if log.step == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(loaded, state, callback=StopAt2(), save=lambda st: checkpoint.save(ckpt, loaded, st))
    path = ckpt / checkpoint.HISTORY
    path.write_text(json.dumps(_old(json.loads(path.read_text()))))
    assert "class_prob" not in path.read_text()

    resumed_model = fresh()
    resumed = train(resumed_model, workflow.resume_state(resumed_model, ckpt))
    assert resumed.status == "complete" and [s.step for s in resumed.history.snapshots] == [0, 1, 2, 3]
    # Ctrl-C after step 2 came before its snapshot, so the resumed run records steps 2 and 3
    assert [bool(s.class_prob) for s in resumed.history.snapshots] == [False, False, True, True]

    scrubber = EmergenceScrubber(resumed.history, resumed.classifier_layer)
    assert set(scrubber.figure.lines) == set(CLASSES)
    assert all(np.isnan(ln.get_ydata()).all() for ln in scrubber.figure.lines.values())  # snapshot 0: old
    assert "no per-class values recorded" in scrubber.figure.ax_lines.get_title()
    scrubber.slider.value = 3
    for c, ln in scrubber.figure.lines.items():
        np.testing.assert_array_equal(ln.get_ydata(), resumed.history.snapshots[3].class_prob[c])


# ---------------------------------------------------------------- the scrubber widget


def _history(n_layers: int = 5) -> History:
    """Three snapshots with distinct, known per-class values (multiply rises first, at layer 3)."""
    snaps = []
    for k, step in enumerate((0, 10, 25)):
        cp = {c: [1e-6 * (1 + i) * (k + 1) * (j + 1) for i in range(n_layers)] for j, c in enumerate(CLASSES)}
        cp["multiply"][3] = (0.001, 0.4, 0.9)[k]
        top1 = [0.0] * n_layers
        top1[3] = (0.0, 0.5, 1.0)[k]
        snaps.append(Snapshot(step, list(np.mean([cp[c] for c in CLASSES], axis=0)), [0.25] * n_layers, top1, cp,
                              train_top1_acc=[(0.0, 0.75, 1.0)[k]] * n_layers))
    return History(list(range(n_layers)), [], snaps)


def _marker(scrubber):
    (marker,) = [ln for ln in scrubber.figure.ax_heat.get_lines() if ln.get_gid() == GID_STEP]
    return marker


def test_scrubber_slider_moves_the_marker_and_the_lines_and_redraws():
    history = _history()
    scrubber = EmergenceScrubber(history, classifier_layer=3)
    fig = scrubber.figure.fig
    assert scrubber.slider.min == 0 and scrubber.slider.max == 2 and scrubber.play.max == 2
    assert _redraws(scrubber.slot) == 1 and len(scrubber.slot.output.outputs) == 1
    assert list(_marker(scrubber).get_xdata()) == [0, 0]
    assert [ln.get_label() for ln in scrubber.figure.lines.values()] == list(CLASSES)

    for index, step in ((2, 25), (1, 10)):
        scrubber.slider.value = index  # what a drag (or the play button, through the browser link) does
        assert scrubber.step == step and list(_marker(scrubber).get_xdata()) == [step, step]
        for c, ln in scrubber.figure.lines.items():
            np.testing.assert_array_equal(ln.get_xdata(), history.layers)
            np.testing.assert_array_equal(ln.get_ydata(), history.snapshots[index].class_prob[c])
        assert f"step <b>{step}</b>" in scrubber.label.value and f"Step {step} " in scrubber.figure.ax_lines.get_title()
        # both snapshot sets' top-1 at the classifier layer, as the history holds them
        held, train = history.snapshots[index].top1_acc[3], history.snapshots[index].train_top1_acc[3]
        assert f"top-1 at L3: held-out {100 * held:.0f}%, training {100 * train:.0f}%" in scrubber.label.value
    assert _redraws(scrubber.slot) == 3 and scrubber.slot.renders == 3
    assert scrubber.figure.fig is fig  # the same figure, updated in place
    assert len(fig.axes) == 3  # lines, heatmap, its colour bar: nothing added by redraws
    # multiply at the classifier layer is the one that became readable: the data says so at the last step
    scrubber.show(-1)
    assert scrubber.slider.value == 2 and _redraws(scrubber.slot) == 4
    at_cls = {c: ln.get_ydata()[3] for c, ln in scrubber.figure.lines.items()}
    assert max(at_cls, key=at_cls.get) == "multiply" and at_cls["multiply"] == 0.9
    cls_lines = [ln for ln in scrubber.figure.ax_lines.get_lines() if ln.get_gid() == "lazarus:classifier_layer"]
    assert [list(ln.get_xdata()) for ln in cls_lines] == [[3, 3]]
    with pytest.raises(IndexError):
        scrubber.show(3)


def test_scrubber_play_is_slow_enough_to_follow():
    """Each snapshot stays up for at least half a second, and a short run's play is spread over seconds."""
    history = _history()
    short = EmergenceScrubber(history, classifier_layer=3)
    assert PLAY_MS[0] >= 400 and short.play.interval * short.play.max >= MIN_PLAY_MS >= 2000
    long = EmergenceScrubber(replace(history, snapshots=[replace(history.snapshots[0], step=k) for k in range(50)]))
    assert long.play.interval == PLAY_MS[0]
    assert EmergenceScrubber(history, interval_ms=900).play.interval == 900


def test_scrubber_from_a_checkpoint_path_and_an_old_history(fresh, tmp_path):
    loaded = fresh()
    ckpt = tmp_path / "ckpt"
    workflow.run_dual_reward(loaded, replace(TINY, steps=1, classifier_layer=1), output=ckpt, answers=False)
    scrubber = EmergenceScrubber(ckpt)  # the classifier layer comes from the checkpoint
    saved = checkpoint.read_history(ckpt)
    assert scrubber.classifier_layer == 1 and scrubber.history == saved and len(saved.snapshots) == 2
    scrubber.slider.value = 1
    for c, ln in scrubber.figure.lines.items():
        np.testing.assert_array_equal(ln.get_ydata(), saved.snapshots[1].class_prob[c])

    # the same checkpoint as an older version wrote it: one line, the mean over classes
    path = ckpt / checkpoint.HISTORY
    path.write_text(json.dumps(_old(json.loads(path.read_text()))))
    old = EmergenceScrubber(ckpt, classifier_layer=2)
    assert old.classifier_layer == 2 and list(old.figure.lines) == [MEAN_LABEL]
    old.slider.value = 1
    np.testing.assert_array_equal(old.figure.lines[MEAN_LABEL].get_ydata(), saved.snapshots[1].prob)


def test_scrubber_refuses_unusable_sources_with_a_sentence(tmp_path):
    with pytest.raises(LazarusError, match="does not exist"):
        EmergenceScrubber(tmp_path / "missing")
    with pytest.raises(LazarusError, match="no logit-lens snapshots"):
        EmergenceScrubber(History([0, 1]))
    h = _history()
    bad = replace(h, snapshots=[replace(h.snapshots[0], class_prob={"add": [0.5, 2.0, 0.1, 0.1, 0.1]})])
    with pytest.raises(ValueError, match="probabilities"):
        EmergenceScrubber(bad)
