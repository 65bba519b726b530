"""lazarus_nb.show.figures: each result object becomes the figure the demo and notebooks draw, with its numbers.

The results are real objects (a ProbeResult from probe_layers on synthetic hidden states, a History, an
Evaluation and a LensReport built by hand), and every test reads the numbers back out of the figure's axes.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection, QuadMesh  # noqa: E402

from lazarus_nb.measure.evaluate import Evaluation, LensStats  # noqa: E402
from lazarus_nb.measure.probe import ProbeConfig, probe_layers  # noqa: E402
from lazarus_nb.results.lens import LayerRead, LensReport, PromptRead, TargetRead  # noqa: E402
from lazarus_nb.show import figures  # noqa: E402
from lazarus_nb.show.plots import training as training_plots
from lazarus_nb.train.history import History, Snapshot, StepLog  # noqa: E402

CLASSES = ["multiply", "add", "subtract", "divide"]
CLS = "lazarus:classifier_layer"


def _lines(ax, gid: str | None = None) -> list:
    return [ln for ln in ax.get_lines() if ln.get_gid() == gid] if gid else list(ax.get_lines())


def _data_lines(ax) -> list:
    return [ln for ln in ax.get_lines() if ln.get_gid() != CLS]


def _classifier_x(ax) -> list[float]:
    return [ln.get_xdata()[0] for ln in _lines(ax, CLS)]


def _mesh(ax) -> np.ndarray:
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    return np.asarray(mesh.get_array())


def _probe_result(shift: float, seed: int, control: bool = True):
    """4 layers, 4 classes x 6 prompts; the class is linearly visible from layer 2 on, ``shift`` apart."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), 6)
    hidden = rng.normal(size=(4, labels.size, 5))
    hidden[2:, np.arange(labels.size), labels] += shift
    return probe_layers(hidden, labels, config=ProbeConfig(folds=3, seed=seed, control=control))


def _history(n_layers: int = 5) -> History:
    steps = [StepLog(s, 10.0 - s, 12.0 - 2 * s, 1.0 + 0.1 * s, 0.5) for s in range(1, 5)]
    snaps = [Snapshot(s, [0.01 * (layer + 1) * (s + 1) for layer in range(n_layers)], [0.25] * n_layers,
                      [0.0] * n_layers) for s in (0, 2, 4)]
    return History(list(range(n_layers)), steps, snaps)


def _evaluation(layer: int, scale: float) -> Evaluation:
    layers = list(range(6))
    class_prob = {c: [scale * (k + 1) * 10.0 ** (i - 8) for i in layers] for k, c in enumerate(CLASSES)}
    stats = LensStats(layers, [0.1] * 6, [0.25] * 6, [0.0] * 6, [100.0] * 6, class_prob)
    return Evaluation(layer, [], 0, 0.25, 0.0, 0.1, stats, None)


def _report() -> LensReport:
    """Two prompts, layers 1 and 3, the four class words as targets."""
    layers = [1, 3]
    prompts = []
    for b, prompt in enumerate(["7 * 8 = ", "9 - 4 = "]):
        rows = []
        for layer in layers:
            targets = {w: TargetRead(100 + k, 0.01 * (k + 1) + 0.1 * layer + 0.001 * b, 10 + k)
                       for k, w in enumerate(CLASSES)}
            rows.append(LayerRead(layer, targets, [(f" tok{layer}{b}{j}", 0.5 / (j + 1)) for j in range(3)]))
        prompts.append(PromptRead(prompt, rows))
    return LensReport(layers, {w: 100 + k for k, w in enumerate(CLASSES)}, prompts, {})


# ------------------------------------------------------------------------------------------------ probe


def test_probe_figure_overlays_each_family_with_its_numbers():
    results = {"symbolic": _probe_result(4.0, 0), "words": _probe_result(1.0, 1)}
    fig = figures.probe_figure(results, classifier_layer=2)
    (ax,) = fig.axes
    assert ax.get_title() == "Linear probe accuracy by layer"
    for family, res in results.items():
        (line,) = [ln for ln in _lines(ax, "lazarus:probe") if ln.get_label() == f"{family} prompts"]
        np.testing.assert_array_equal(line.get_xdata(), [p.layer for p in res.layers])
        np.testing.assert_allclose(line.get_ydata(), [p.accuracy for p in res.layers])
        (control,) = [ln for ln in _lines(ax, "lazarus:control")
                      if ln.get_label() == f"shuffled-label control ({family} prompts)"]
        np.testing.assert_allclose(control.get_ydata(), [p.control for p in res.layers])
    assert results["symbolic"].layers[3].accuracy > results["symbolic"].layers[0].accuracy  # real signal
    # +-std bands: probe and control of each family; the probe band spans accuracy -+ std
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 4
    sym = results["symbolic"].layers
    lo = min(v[1] for v in bands[0].get_paths()[0].vertices if v[0] == 0)
    assert lo == pytest.approx(sym[0].accuracy - sym[0].std)
    (chance,) = _lines(ax, "lazarus:chance")  # same chance for both families: drawn once
    assert chance.get_ydata()[0] == results["symbolic"].chance == 0.25
    assert _classifier_x(ax) == [2]


def test_probe_figure_without_control_draws_no_control_line():
    fig = figures.probe_figure({"words": _probe_result(1.0, 0, control=False)})
    (ax,) = fig.axes
    assert not _lines(ax, "lazarus:control") and not _classifier_x(ax)
    assert [ln.get_label() for ln in _lines(ax, "lazarus:probe")] == ["words prompts"]
    with pytest.raises(ValueError, match="no probe results"):
        figures.probe_figure({})


# ---------------------------------------------------------------------------------------------- history


def test_emergence_figures_show_the_history_snapshots():
    hist = _history()
    heatmap, curves = figures.emergence_figures(hist, classifier_layer=3)
    expected = np.array([s.prob for s in hist.snapshots]).T  # (layers, snapshots)
    (ax,) = [a for a in heatmap.axes if a.get_label() != "<colorbar>"]
    np.testing.assert_allclose(_mesh(ax).reshape(5, 3), expected)
    assert [ln.get_ydata()[0] for ln in _lines(ax, CLS)] == [3]  # horizontal: y is the layer
    assert ax.get_xlabel() == "training step" and "layer" in ax.get_ylabel()

    (cax,) = curves.axes
    (cls_line,) = [ln for ln in cax.get_lines() if ln.get_label() == "layer 3 (classifier)"]
    np.testing.assert_array_equal(cls_line.get_xdata(), [0, 2, 4])
    np.testing.assert_allclose(cls_line.get_ydata(), expected[3])
    assert {ln.get_label() for ln in cax.get_lines()} >= {"layer 2", "layer 4", "other layers"}


def test_loss_figure_plots_every_step():
    hist = _history()
    (ax,) = figures.loss_figure(hist).axes
    total, cls_loss, ans = ax.get_lines()
    for line, attr in ((total, "total"), (cls_loss, "cls_loss"), (ans, "ans_loss")):
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
        np.testing.assert_allclose(line.get_ydata(), [getattr(s, attr) for s in hist.steps])
    assert total.get_label() == "total (weighted)" and ax.get_title() == "Dual-reward training loss"


def test_update_dashboard_redraws_the_same_figure_from_a_growing_history():
    dash = training_plots.training_dashboard()
    hist = History(list(range(5)))
    fig = figures.update_dashboard(dash, hist, classifier_layer=3)
    assert fig is dash.fig
    assert all(any("waiting" in t.get_text() for t in ax.texts) for ax in fig.axes)  # nothing yet

    full = _history()
    hist.steps += full.steps[:2]
    hist.snapshots += full.snapshots[:2]
    assert figures.update_dashboard(dash, hist, classifier_layer=3) is fig
    loss_ax, heat_ax = fig.axes[:2]
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), [s.total for s in full.steps[:2]])
    np.testing.assert_allclose(_mesh(heat_ax).reshape(5, 2), np.array([s.prob for s in full.snapshots[:2]]).T)
    assert [ln.get_ydata()[0] for ln in _lines(heat_ax, CLS)] == [3]
    assert "step 2" in fig.get_suptitle()


# ------------------------------------------------------------------------------------------------- lens


def test_lens_figure_draws_each_class_mean_at_its_layer():
    ev = _evaluation(layer=4, scale=1.0)
    (ax,) = figures.lens_figure(ev, title="Base model").axes
    assert ax.get_title() == "Base model" and ax.get_yscale() == "log"
    lines = {ln.get_label(): ln for ln in _data_lines(ax)}
    assert list(lines) == CLASSES
    for c, ln in lines.items():
        np.testing.assert_array_equal(ln.get_xdata(), ev.lens.layers)
        np.testing.assert_allclose(ln.get_ydata(), ev.lens.class_prob[c])
    assert _classifier_x(ax) == [4]
    assert figures.lens_figure(ev).axes[0].get_title() == "Logit lens: class-token probability by layer"


def test_lens_before_after_figure_has_base_left_and_adapted_right():
    base, adapted = _evaluation(layer=3, scale=1.0), _evaluation(layer=3, scale=100.0)
    left, right = figures.lens_before_after_figure(base, adapted).axes
    assert "Before" in left.get_title() and "After" in right.get_title()
    for ax, ev in ((left, base), (right, adapted)):
        for ln in _data_lines(ax):
            np.testing.assert_allclose(ln.get_ydata(), ev.lens.class_prob[ln.get_label()])
        assert _classifier_x(ax) == [3]
    assert left.get_ylim()[0] <= min(min(v) for v in base.lens.class_prob.values())  # shared, from both


def test_prompt_lens_figure_reads_one_prompt_of_a_report():
    report = _report()
    (ax,) = figures.prompt_lens_figure(report, classifier_layer=3, prompt=1).axes
    lines = {ln.get_label(): ln for ln in _data_lines(ax)}
    assert list(lines) == CLASSES
    for w, ln in lines.items():
        np.testing.assert_array_equal(ln.get_xdata(), [1, 3])
        np.testing.assert_allclose(ln.get_ydata(), [row.targets[w].prob for row in report.prompts[1].layers])
    assert _classifier_x(ax) == [3]
    assert ax.get_title() == "Logit lens on '9 - 4 = '"
    assert ax.get_ylabel() == "P(class token) at the last prompt token"


def test_top_tokens_figure_lists_each_prompt_top_tokens_at_the_layer():
    report = _report()
    (ax,) = figures.top_tokens_figure(report, 3).axes
    assert ax.get_title(loc="left") == "Logit lens at layer 3: top-3 tokens"
    cells = {rc: cell.get_text().get_text() for rc, cell in ax.tables[0].get_celld().items()}
    assert cells[(1, 0)] == repr("7 * 8 = ") and cells[(2, 0)] == repr("9 - 4 = ")
    assert cells[(1, 1)] == "␣tok300  50.0%" and cells[(2, 3)] == "␣tok312  16.7%"
    with pytest.raises(ValueError, match="layer 2 was not read"):
        figures.top_tokens_figure(report, 2)
