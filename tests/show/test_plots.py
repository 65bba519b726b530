"""Tests for lazarus_nb.plots: structure of each figure, input validation, in-place dashboard, atomic save."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mimage  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection, QuadMesh  # noqa: E402
from matplotlib.colors import to_hex, to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lazarus_nb.show.plots import emergence as emergence_plots
from lazarus_nb.show.plots import lens as lens_plots
from lazarus_nb.show.plots import output as plot_output
from lazarus_nb.show.plots import probe as probe_plots
from lazarus_nb.show.plots import style as plots  # noqa: E402
from lazarus_nb.show.plots import sweep as sweep_plots
from lazarus_nb.show.plots import training as training_plots

CLASSES = ["multiply", "add", "subtract", "divide"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _lens_probs(n_layers: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: rng.uniform(1e-7, 1e-3, n_layers) for c in CLASSES}


def _grid(n_layers: int, n_steps: int) -> np.ndarray:
    # distinct values everywhere, so a transposed or flipped image cannot match by accident
    return np.arange(n_layers * n_steps, dtype=float).reshape(n_layers, n_steps) / (n_layers * n_steps)


def _data_lines(ax):
    return [ln for ln in ax.get_lines() if ln.get_gid() != plots.GID_CLS]


def _classifier_lines(ax):
    return [ln for ln in ax.get_lines() if ln.get_gid() == plots.GID_CLS]


def _mesh(ax) -> QuadMesh:
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    return meshes[0]


def _major_ticks(axis) -> list[float]:
    return list(axis.get_major_locator()())


# ------------------------------------------------------------------------------------------- constants


def test_class_colors_fixed_distinct_and_okabe_ito():
    assert list(plots.CLASS_COLORS) == CLASSES
    okabe_ito = {"#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7", "#000000"}
    hexes = [to_hex(c) for c in plots.CLASS_COLORS.values()]
    assert len(set(hexes)) == 4
    assert set(hexes) <= okabe_ito


# ------------------------------------------------------------------------------------------- probe


def test_probe_accuracy_structure():
    layers = list(range(30))
    acc = np.linspace(0.3, 0.9, 30)
    fig = probe_plots.probe_accuracy(layers, acc, np.full(30, 0.05), control=np.full(30, 0.26),
                               control_std=np.full(30, 0.02), chance=0.25, classifier_layer=16)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == "Linear probe accuracy by layer"
    assert "layer" in ax.get_xlabel()
    assert "accuracy" in ax.get_ylabel()
    # probe line, control line, chance line, classifier marker
    assert len(ax.get_lines()) == 4
    probe = [ln for ln in ax.get_lines() if ln.get_label() == "probe"]
    assert len(probe) == 1
    np.testing.assert_allclose(probe[0].get_ydata(), acc)
    control = [ln for ln in ax.get_lines() if ln.get_label() == "shuffled-label control"]
    assert len(control) == 1 and control[0].get_linestyle() == "--"
    assert to_hex(control[0].get_color()) == to_hex(plots.GREY)
    chance = [ln for ln in ax.get_lines() if ln.get_gid() == plots.GID_CHANCE]
    assert len(chance) == 1 and chance[0].get_linestyle() == ":" and chance[0].get_ydata()[0] == 0.25
    (cls,) = _classifier_lines(ax)
    assert cls.get_xdata()[0] == 16 and cls.get_linestyle() == "--"
    assert "classifier layer 16" in [t.get_text() for t in fig.legends + ax.get_legend().get_texts()]
    # two +-std bands (probe and control)
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2
    # 30 layers: thinned integer ticks, every tick a real layer, 0 shown, limits cover every layer
    ticks = _major_ticks(ax.xaxis)
    assert 5 <= len(ticks) <= 16
    assert all(float(t).is_integer() and int(t) in layers for t in ticks)
    assert 0 in ticks
    lo, hi = ax.get_xlim()
    assert lo < 0 and hi > 29


def test_probe_accuracy_overlay_on_same_axes():
    layers = list(range(8))
    fig = probe_plots.probe_accuracy(layers, [0.5] * 8, [0.1] * 8, control=[0.25] * 8, label="symbolic",
                               chance=0.25, classifier_layer=4)
    ax = fig.axes[0]
    fig2 = probe_plots.probe_accuracy(layers, [0.7] * 8, [0.1] * 8, control=[0.24] * 8, label="words",
                                chance=0.25, classifier_layer=4, ax=ax)
    assert fig2 is fig
    assert len(fig.axes) == 1
    labels = [ln.get_label() for ln in ax.get_lines()]
    # 2 probes + 2 controls + one chance + one classifier marker (not duplicated)
    assert len(labels) == 6
    assert "symbolic" in labels and "words" in labels
    assert "shuffled-label control (symbolic)" in labels and "shuffled-label control (words)" in labels
    probes = [ln for ln in ax.get_lines() if ln.get_label() in ("symbolic", "words")]
    assert to_hex(probes[0].get_color()) != to_hex(probes[1].get_color())
    # the two grey controls are told apart by their dashes, not only by their small markers
    controls = [ln for ln in ax.get_lines() if ln.get_gid() == plots.GID_CONTROL]
    assert len(controls) == 2 and controls[0].get_linestyle() != controls[1].get_linestyle()
    chance = [ln for ln in ax.get_lines() if ln.get_gid() == plots.GID_CHANCE]
    assert chance[0].get_linestyle() not in {ln.get_linestyle() for ln in controls}
    legend_texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "words" in legend_texts and "symbolic" in legend_texts
    # 8 layers: every layer is a tick
    assert _major_ticks(ax.xaxis) == list(range(8))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(layers=[], accuracy=[], std=[]), "layers is empty"),
        (dict(layers=[0, 1, 2], accuracy=[0.5, 0.6], std=[0.1, 0.1, 0.1]), "accuracy has 2 values"),
        (dict(layers=[0, 1, 2], accuracy=[0.5] * 3, std=[0.1] * 2), "std has 2 values"),
        (dict(layers=[0, 1], accuracy=[0.5] * 2, std=[0.1] * 2, control=[0.2]), "control has 1 values"),
        (dict(layers=[0, 1], accuracy=[0.5] * 2, std=[0.1] * 2, control_std=[0.1] * 2), "without control"),
        (dict(layers=[0, 1], accuracy=[0.5] * 2, std=[0.1] * 2, classifier_layer=7), "outside the plotted"),
        (dict(layers=[0.5, 1], accuracy=[0.5] * 2, std=[0.1] * 2), "integer layer numbers"),
        (dict(layers=[0, 1], accuracy=[[0.5, 0.5]], std=[0.1] * 2), "one-dimensional"),
    ],
)
def test_probe_accuracy_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        probe_plots.probe_accuracy(**kwargs)


# ------------------------------------------------------------------------------------------- lens


def test_lens_probability_lines_colors_and_log_axis():
    layers = list(range(22))
    probs = _lens_probs(22)
    fig = lens_plots.lens_probability(layers, probs, classifier_layer=12)
    ax = fig.axes[0]
    assert ax.get_title() == "Logit lens: class-token probability by layer"
    assert "layer" in ax.get_xlabel() and "P(class token)" in ax.get_ylabel()
    assert ax.get_yscale() == "log"
    # 4 class lines + the classifier-layer marker
    assert len(ax.get_lines()) == 5
    data = _data_lines(ax)
    assert [ln.get_label() for ln in data] == CLASSES
    for ln in data:
        assert to_hex(ln.get_color()) == to_hex(plots.CLASS_COLORS[ln.get_label()])
        np.testing.assert_allclose(ln.get_ydata(), probs[ln.get_label()])
    (cls,) = _classifier_lines(ax)
    assert cls.get_xdata()[0] == 12
    # y range reaches down to the smallest probability and up to probability 1
    lo, hi = ax.get_ylim()
    assert 0 < lo <= min(v.min() for v in probs.values()) and hi >= 1
    ticks = _major_ticks(ax.xaxis)
    assert all(float(t).is_integer() and 0 <= t <= 21 for t in ticks) and 0 in ticks


def test_lens_probability_linear_and_class_order_canonical():
    probs = {"divide": [0.1, 0.2], "multiply": [0.3, 0.4]}
    fig = lens_plots.lens_probability([0, 1], probs, log=False)
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear"
    assert [ln.get_label() for ln in ax.get_lines()] == ["multiply", "divide"]  # canonical order, no marker


@pytest.mark.parametrize(
    "probs, match",
    [
        ({}, "probs is empty"),
        ({"add": [0.1, 0.2]}, "has 2 values but layers has 3"),
        ({"add": [0.1, 0.2, 1.5]}, r"probabilities in \[0, 1\]"),
        ({"add": [0.1, -0.2, 0.5]}, r"probabilities in \[0, 1\]"),
        ([0.1, 0.2, 0.3], "must be a mapping"),
    ],
)
def test_lens_probability_rejects_bad_input(probs, match):
    with pytest.raises(ValueError, match=match):
        lens_plots.lens_probability([0, 1, 2], probs)


def test_lens_before_after_panels_share_y():
    layers = list(range(16))
    before = _lens_probs(16, 1)
    after = {c: np.clip(v * 1000, 0, 1) for c, v in before.items()}
    fig = lens_plots.lens_before_after(layers, before, after, classifier_layer=8)
    ax0, ax1 = fig.axes
    assert ax0.get_title() == "Before training (base model)"
    assert ax1.get_title() == "After training (adapter loaded from disk)"
    assert ax0.get_shared_y_axes().joined(ax0, ax1)
    assert ax0.get_ylim() == ax1.get_ylim()
    assert ax0.get_yscale() == ax1.get_yscale() == "log"
    for ax, src in ((ax0, before), (ax1, after)):
        data = _data_lines(ax)
        assert [ln.get_label() for ln in data] == CLASSES
        np.testing.assert_allclose(data[0].get_ydata(), src["multiply"])
        assert [ln.get_xdata()[0] for ln in _classifier_lines(ax)] == [8]
    assert fig.get_suptitle()


def test_lens_before_after_rejects_different_classes():
    with pytest.raises(ValueError, match="same classes"):
        lens_plots.lens_before_after([0, 1], {"add": [0.1, 0.2]}, {"multiply": [0.1, 0.2]})


# ------------------------------------------------------------------------------------------- emergence


def test_emergence_heatmap_array_orientation_and_ticks():
    steps = [0, 50, 100, 150, 200]
    layers = list(range(30))
    values = _grid(30, 5)
    fig = emergence_plots.emergence_heatmap(steps, layers, values, classifier_layer=16)
    ax = fig.axes[0]
    assert ax.get_title() == "Classifier emergence: P(correct class token) by layer and step"
    assert ax.get_xlabel() == "training step"
    assert "layer" in ax.get_ylabel()
    mesh = _mesh(ax)
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).reshape(30, 5), values)
    assert mesh.get_clim() == (0.0, 1.0)
    # layer 0 at the bottom, every layer inside the limits
    lo, hi = ax.get_ylim()
    assert lo < hi and lo <= -0.5 + 1e-9 and hi >= 29.5 - 1e-9
    yt = _major_ticks(ax.yaxis)
    assert 0 in yt and 5 <= len(yt) <= 16
    assert all(float(t).is_integer() and int(t) in layers for t in yt)
    assert _major_ticks(ax.xaxis) == steps
    (cls,) = _classifier_lines(ax)
    assert cls.get_ydata()[0] == 16
    assert any("classifier layer 16" in t.get_text() for t in ax.texts)
    # colorbar with its label
    assert len(fig.axes) == 2
    assert fig.axes[1].get_ylabel() == "mean P(class token)"


def test_emergence_heatmap_single_step_and_custom_range():
    values = np.array([[0.1], [0.2], [0.3]])
    fig = emergence_plots.emergence_heatmap([0], [0, 1, 2], values, vmin=None, vmax=None, cbar_label="accuracy")
    ax = fig.axes[0]
    np.testing.assert_array_equal(np.asarray(_mesh(ax).get_array()).reshape(3, 1), values)
    lo, hi = ax.get_xlim()
    assert lo < 0 < hi
    assert fig.axes[1].get_ylabel() == "accuracy"
    # a flat per-layer vector is accepted for a single step
    fig = emergence_plots.emergence_heatmap([10], [0, 1, 2], [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(np.asarray(_mesh(fig.axes[0]).get_array()).ravel(), [0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    "steps, layers, values, match",
    [
        ([0, 10, 20], [0, 1], np.zeros((3, 2)), "looks transposed"),
        ([0, 10, 20], [0, 1], np.zeros((2, 2)), r"must be \(len\(layers\), len\(steps\)\) = \(2, 3\)"),
        ([], [0, 1], np.zeros((2, 0)), "steps is empty"),
        ([0, 10], [], np.zeros((0, 2)), "layers is empty"),
        ([10, 0], [0, 1], np.zeros((2, 2)), "strictly increasing"),
        ([0, 10], [1, 0], np.zeros((2, 2)), "strictly increasing"),
    ],
)
def test_emergence_heatmap_rejects_bad_shapes(steps, layers, values, match):
    with pytest.raises(ValueError, match=match):
        emergence_plots.emergence_heatmap(steps, layers, values)


def test_emergence_curves_highlight_classifier_and_neighbours():
    steps = [0, 100, 200, 300]
    layers = list(range(10))
    values = _grid(10, 4)
    fig = emergence_plots.emergence_curves(steps, layers, values, classifier_layer=5)
    ax = fig.axes[0]
    assert ax.get_title()
    assert ax.get_xlabel() == "training step"
    assert ax.get_ylabel()
    lines = ax.get_lines()
    assert len(lines) == 10  # one per layer
    grey = [ln for ln in lines if to_hex(ln.get_color()) == "#c4c4c4"]
    coloured = [ln for ln in lines if to_hex(ln.get_color()) != "#c4c4c4"]
    assert len(grey) == 7
    assert sorted(ln.get_label() for ln in coloured) == ["layer 4", "layer 5 (classifier)", "layer 6"]
    (cls,) = [ln for ln in coloured if ln.get_label() == "layer 5 (classifier)"]
    np.testing.assert_allclose(cls.get_ydata(), values[5])
    np.testing.assert_allclose(cls.get_xdata(), steps)
    assert cls.get_linewidth() > grey[0].get_linewidth()


def test_emergence_curves_explicit_highlight_and_errors():
    fig = emergence_plots.emergence_curves([0, 1], [0, 1, 2], _grid(3, 2), highlight=[0])
    coloured = [ln for ln in fig.axes[0].get_lines() if to_hex(ln.get_color()) != "#c4c4c4"]
    assert [ln.get_label() for ln in coloured] == ["layer 0"]
    # default without a classifier layer: best final layer (2) and its neighbour
    fig = emergence_plots.emergence_curves([0, 1], [0, 1, 2], _grid(3, 2))
    coloured = [ln for ln in fig.axes[0].get_lines() if to_hex(ln.get_color()) != "#c4c4c4"]
    assert sorted(ln.get_label() for ln in coloured) == ["layer 1", "layer 2"]
    with pytest.raises(ValueError, match="not among the plotted layers"):
        emergence_plots.emergence_curves([0, 1], [0, 1, 2], _grid(3, 2), highlight=[7])
    with pytest.raises(ValueError, match="looks transposed"):
        emergence_plots.emergence_curves([0, 1], [0, 1, 2], _grid(2, 3))


# ------------------------------------------------------------------------------------------- loss


def test_loss_curves_three_lines():
    steps = np.arange(0, 100, 10)
    total, cls, ans = np.linspace(8, 1, 10), np.linspace(14, 1, 10), np.linspace(2, 1, 10)
    fig = training_plots.loss_curves(steps, total, cls, ans)
    ax = fig.axes[0]
    assert ax.get_title() == "Dual-reward training loss"
    assert ax.get_xlabel() == "training step"
    assert "loss" in ax.get_ylabel()
    lines = ax.get_lines()
    assert len(lines) == 3
    for ln, want in zip(lines, (total, cls, ans)):
        np.testing.assert_allclose(ln.get_ydata(), want)
    assert len({to_hex(ln.get_color()) for ln in lines}) == 3
    assert len(ax.get_legend().get_texts()) == 3


def _outside(artist, axes) -> bool:
    """Whether ``artist``'s drawn box stays clear of every data area in ``axes`` (the figure is drawn first)."""
    artist.figure.draw_without_rendering()
    box = artist.get_window_extent()
    return not any(box.overlaps(ax.get_window_extent()) for ax in axes)


def test_loss_legend_is_outside_the_data_area():
    """The curves can run anywhere in the axes: the legend sits outside them, alone and in the dashboard."""
    steps = np.arange(1, 41)
    losses = [a * np.exp(-steps / b) + 0.5 for a, b in ((8, 10), (12, 8), (2, 30))]
    fig = training_plots.loss_curves(steps, *losses)
    assert _outside(fig.axes[0].get_legend(), fig.axes)
    dashboard = training_plots.training_dashboard()
    dashboard.update(steps, *losses, [0, 20, 40], list(range(6)), _grid(6, 3), classifier_layer=3)
    loss_ax = dashboard.fig.axes[0]
    assert loss_ax.get_legend() is not None and _outside(loss_ax.get_legend(), dashboard.fig.axes)


def test_trade_off_weight_labels_are_legible_and_apart():
    """Points of nearby weights sit together: each w= label is at least 8 pt and overlaps no other label."""
    weights = np.array([0, 0.2, 0.4, 0.6, 0.8, 1.0])

    def spread(mean):
        mean = np.asarray(mean, dtype=float)
        return np.stack([mean, mean - 0.01, mean + 0.01])

    series = {"": {"cls_weight": weights, "y": spread([0, 0, 0.01, 0.02, 0.5, 0.9]),
                   "acc": spread([0.05, 0.05, 0.05, 0.04, 0.04, 0.03]),
                   "nll": spread([1.1, 1.1, 1.12, 1.15, 1.3, 2.0])}}
    fig = sweep_plots.trade_off(series, {"acc": "answer accuracy", "nll": "answer NLL"}, "top-1",
                                fractions=("acc",))
    fig.draw_without_rendering()
    for ax in fig.axes:
        labels = [t for t in ax.texts if t.get_text().startswith("w=")]
        assert sorted(t.get_text() for t in labels) == sorted(f"w={w:g}" for w in weights)
        assert all(t.get_fontsize() >= 8 for t in labels)
        boxes = [t.get_window_extent() for t in labels]
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def _readable_panel(steps) -> dict:
    steps = np.asarray(steps, dtype=float)
    readable = np.isfinite(steps).astype(int)
    return {"": {"cls_weight": [0.2, 0.8], "layers": [8, 12], "steps": steps, "readable": readable,
                 "runs": np.ones(steps.shape, int)}}


def test_readable_heatmap_has_a_colour_bar_only_when_some_run_was_readable():
    none = sweep_plots.readable_heatmap(_readable_panel(np.full((2, 2), np.nan)))
    assert [ax.get_label() for ax in none.axes] == [""]  # no colour bar: every cell is grey "not readable"
    some = sweep_plots.readable_heatmap(_readable_panel([[np.nan, 50], [np.nan, 100]]))
    assert [ax.get_label() for ax in some.axes] == ["", "<colorbar>"]


def test_loss_curves_rejects_mismatch_and_empty():
    with pytest.raises(ValueError, match="cls_loss has 2 values but steps has 3"):
        training_plots.loss_curves([0, 1, 2], [1, 1, 1], [1, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="steps is empty"):
        training_plots.loss_curves([], [], [], [])


# ------------------------------------------------------------------------------------------- table


def test_top_tokens_table_shows_visible_whitespace():
    rows = [
        ("7 * 8 = ", [(" multiply", 0.41), ("\n", 0.03), ("56", 0.0004)]),
        ("23 + 45 = ", [(" add", 0.55), ("\xa0", 3.37e-11), ("x" * 30, float("nan"))]),
    ]
    fig = lens_plots.top_tokens_table(rows, title="Top tokens at layer 12")
    ax = fig.axes[0]
    assert ax.get_title(loc="left") == "Top tokens at layer 12"
    (table,) = ax.tables
    texts = [cell.get_text().get_text() for cell in table.get_celld().values()]
    assert "␣multiply  41.0%" in texts  # format.token and format.prob, as the CLI's tables write them
    assert "↵  3.0%" in texts  # a newline token is a visible mark, not a line break
    assert "56  0.040%" in texts
    assert "\\xa0  3.4e-11" in texts and "xxxxxxxxxxxxx…  n/a" in texts
    assert "'7 * 8 = '" in texts  # prompts keep their repr: trailing space visible
    cells = table.get_celld()
    assert max(r for r, _ in cells) == 2 and max(c for _, c in cells) == 3  # header + 2 rows, prompt + 3


@pytest.mark.parametrize(
    "rows, match",
    [
        ([], "rows is empty"),
        ([("7 * 8 = ", [])], "has no tokens"),
        ([("7 * 8 = ", [("a", "x")])], r"rows\[0\] must be"),
        (["not a pair"], r"rows\[0\] must be"),
    ],
)
def test_top_tokens_table_rejects_bad_rows(rows, match):
    with pytest.raises(ValueError, match=match):
        lens_plots.top_tokens_table(rows)


# ------------------------------------------------------------------------------------------- dashboard


def test_dashboard_updates_in_place():
    dash = training_plots.training_dashboard()
    fig = dash.fig
    assert isinstance(fig, Figure)
    layers = list(range(6))
    dash.update([0, 1, 2], [3, 2, 1], [5, 4, 3], [1, 1, 1], [0], layers, _grid(6, 1), classifier_layer=3)
    first_axes = len(fig.axes)
    second = 1 - _grid(6, 3)
    dash.update(list(range(10)), [1.0] * 10, [2.0] * 10, [0.5] * 10, [0, 5, 9], layers, second,
                classifier_layer=3)
    assert dash.fig is fig
    assert len(fig.axes) == first_axes == 3  # loss, heatmap, colorbar: not accumulating
    loss_ax, heat_ax = fig.axes[0], fig.axes[1]
    assert len(loss_ax.get_lines()) == 3
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_xdata(), range(10))
    np.testing.assert_array_equal(np.asarray(_mesh(heat_ax).get_array()).reshape(6, 3), second)
    assert "step 9" in fig.get_suptitle()


def test_dashboard_on_given_figure_and_empty_history():
    fig = Figure()
    dash = training_plots.training_dashboard(fig)
    assert dash.fig is fig
    dash.update([], [], [], [], [], [], np.zeros((0, 0)))  # before the first step: placeholder, no error
    assert len(fig.axes) == 2
    assert any("waiting" in t.get_text() for t in fig.axes[0].texts)
    with pytest.raises(ValueError):
        dash.update([0, 1], [1.0], [1.0, 1.0], [1.0, 1.0], [], [], np.zeros((0, 0)))


# ------------------------------------------------------------------------------------------- display


def test_figures_have_opaque_white_background():
    fig = lens_plots.lens_probability([0, 1, 2], {"add": [0.1, 0.2, 0.3]})
    assert to_rgba(fig.get_facecolor()) == (1.0, 1.0, 1.0, 1.0)
    assert to_rgba(fig.axes[0].get_facecolor()) == (1.0, 1.0, 1.0, 1.0)
    assert to_hex(fig.axes[0].title.get_color()) != "#ffffff"


def test_notebook_repr_is_png_without_inline_backend():
    from IPython.core.formatters import DisplayFormatter

    fig = training_plots.loss_curves([0, 1], [2, 1], [3, 2], [1, 1])
    data, _ = DisplayFormatter().format(fig)
    assert "image/png" in data
    png = fig._repr_png_()
    assert png.startswith(PNG_MAGIC)
    assert png == plot_output.png_bytes(fig)  # the one PNG rendering (widgets' figure slots use it too)


def test_png_bytes_is_opaque_white(tmp_path):
    fig = lens_plots.lens_probability([0, 1, 2], {"add": [0.1, 0.2, 0.3]})
    path = tmp_path / "fig.png"
    path.write_bytes(plot_output.png_bytes(fig))
    img = mimage.imread(path)
    assert (img[..., 3] == 1).all() and (img[0, 0, :3] == 1).all()  # opaque, white corner in any theme


def test_no_pyplot_figures_created():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    probe_plots.probe_accuracy([0, 1], [0.5, 0.6], [0.1, 0.1])
    training_plots.training_dashboard()
    assert plt.get_fignums() == before


# ------------------------------------------------------------------------------------------- save


def test_save_png_atomically(tmp_path):
    fig = training_plots.loss_curves([0, 1, 2], [3, 2, 1], [5, 4, 3], [1, 1, 1])
    w, h = fig.get_size_inches()
    target = tmp_path / "sub" / "dir" / "loss.png"
    out = plot_output.save(fig, target, dpi=50)
    assert out == target
    assert target.read_bytes()[:8] == PNG_MAGIC
    img = mimage.imread(target)
    assert img.shape[:2] == (round(h * 50), round(w * 50))
    assert img[0, 0, :3].tolist() == [1.0, 1.0, 1.0]  # opaque white corner
    if img.shape[2] == 4:
        assert img[0, 0, 3] == 1.0
    # overwrite in place, leave no temp files behind
    plot_output.save(fig, target, dpi=30)
    assert mimage.imread(target).shape[:2] == (round(h * 30), round(w * 30))
    assert os.listdir(target.parent) == ["loss.png"]


def test_save_failure_leaves_no_partial_file(tmp_path):
    fig = training_plots.loss_curves([0, 1], [2, 1], [3, 2], [1, 1])
    with pytest.raises(ValueError):
        plot_output.save(fig, tmp_path / "fig.notaformat")
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="Figure"):
        plot_output.save("not a figure", tmp_path / "x.png")
