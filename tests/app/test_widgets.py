"""TrainPanel and LensExplorer on the tiny random-weight model (no kernel, no browser: plain methods)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402

from lazarus_nb.app.display import FigureSlot, figure_output, seconds_text
from lazarus_nb.app.lens_explorer import GRID_TAB, LensExplorer
from lazarus_nb.app.profiles import Profile, ensure_checkpoint  # noqa: E402
from lazarus_nb.app.sweep_panel import SweepPanel  # noqa: E402
from lazarus_nb.app.train_panel import TrainPanel  # noqa: E402
from lazarus_nb.data.prompts import CANONICAL, CLASSES  # noqa: E402
from lazarus_nb.data.tokens import prompt_batch  # noqa: E402
from lazarus_nb.model import lora  # noqa: E402
from lazarus_nb.model.lens import LogitLens, readout  # noqa: E402
from lazarus_nb.model.load import load_model  # noqa: E402
from lazarus_nb.run import steps as workflow  # noqa: E402
from lazarus_nb.run.steps import run_lens  # noqa: E402
from lazarus_nb.show.format import prob, token  # noqa: E402
from lazarus_nb.show.plots import output as plot_output
from lazarus_nb.show.plots import training as training_plots
from lazarus_nb.train import checkpoint  # noqa: E402
from lazarus_nb.train.loop import TrainConfig  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = TrainConfig(steps=2, num_samples=16, heldout_samples=8, snapshot_every=1, snapshot_size=4, batch_size=4)


@pytest.fixture
def tiny_loaded(tiny_model_dir):
    return load_model(str(tiny_model_dir("llama")))


def _png(output: dict) -> bytes:
    return base64.b64decode(output["data"]["image/png"])


def _text(out) -> str:
    return "".join(o.get("text", "") for o in out.outputs)


def _heatmap(fig) -> QuadMesh:
    meshes = [c for ax in fig.axes if ax.get_label() != "<colorbar>" for c in ax.collections
              if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    return meshes[0]


def _data_lines(fig) -> list:
    return [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() != "lazarus:classifier_layer"]


def _redraws(slot: FigureSlot) -> int:
    """The count the browser sees: the hidden span's data-count, which must equal its text."""
    m = re.fullmatch(r'<span class="lazarus-redraws" data-count="(\d+)" data-title="[^"]*">(\d+)</span>',
                     slot.redraws.value)
    assert m and m[1] == m[2], slot.redraws.value
    return int(m[1])


def test_figure_slot_holds_exactly_one_png():
    fig = training_plots.loss_curves([1, 2], [3.0, 2.0], [4.0, 3.0], [2.0, 1.0])
    slot = FigureSlot(fig)
    slot.update()
    slot.update(fig)
    assert slot.renders == 3
    assert len(slot.output.outputs) == 1  # replaced, never appended
    assert _png(slot.output.outputs[0]) == plot_output.png_bytes(fig) == fig._repr_png_()  # one PNG path
    assert "lazarus-figure" in slot.output._dom_classes
    assert slot.widget.children == (slot.output, slot.redraws) and slot.redraws.layout.display == "none"


def test_figure_output_renders_a_plain_figure_like_a_notebook_figure():
    from matplotlib.figure import Figure

    plain = Figure(figsize=(2, 1), dpi=50)
    out = figure_output(plain)
    assert _png(out) == plot_output.png_bytes(plain) and out["data"]["text/plain"] == "<Figure size 100x50>"


def test_figure_slot_redraw_counter_counts_updates():
    slot = FigureSlot()
    assert _redraws(slot) == 0
    slot.update()  # nothing to show yet: not a redraw
    assert _redraws(slot) == 0 and slot.output.outputs == ()
    fig = training_plots.loss_curves([1, 2], [3.0, 2.0], [4.0, 3.0], [2.0, 1.0])
    for n in (1, 2, 3):
        slot.update(fig)
        assert _redraws(slot) == slot.renders == n


def _shown_title(slot: FigureSlot) -> str:
    """The titles the browser reads: the hidden span's data-title."""
    m = re.search(r'data-title="([^"]*)"', slot.redraws.value)
    assert m, slot.redraws.value
    return html.unescape(m[1])


def test_figure_slot_names_the_titles_of_the_figure_it_shows():
    from matplotlib.figure import Figure

    slot = FigureSlot()
    assert _shown_title(slot) == ""
    fig = Figure(figsize=(2, 1), dpi=50)
    fig.add_subplot().set_title("Loss on '7 * 8 = ' & <more>", loc="left")
    slot.update(fig)
    assert _shown_title(slot) == "Loss on '7 * 8 = ' & <more>"  # quoted for the attribute, read back intact
    fig.suptitle("Training \"dashboard\"")  # read first, then the panels' titles
    fig.add_subplot(2, 1, 2).set_title("Lens")
    slot.update()
    assert _shown_title(slot) == 'Training "dashboard" | Loss on \'7 * 8 = \' & <more> | Lens'
    slot.wait("computing...")  # text in place of the figure: no figure title is shown
    assert _shown_title(slot) == "" and _redraws(slot) == 2


def test_train_panel_run(tiny_loaded, tmp_path):
    panel = TrainPanel(tiny_loaded, TINY, checkpoint=tmp_path / "ckpt", answers=False)
    fig = panel.dashboard.fig
    assert panel.classifier_layer.max == tiny_loaded.num_layers - 1
    assert panel.classifier_layer.value == tiny_loaded.default_classifier_layer
    result = panel.run()

    assert result is not None and result.state.step == 2 and result.state.status == "complete"
    assert panel.result is result
    assert panel.progress.max == 2 and panel.progress.value == panel.progress.max
    assert panel.progress.bar_style == "success"
    # one figure for the panel's lifetime, redrawn in place and shown in one slot
    assert panel.dashboard.fig is fig and panel.figure.fig is fig
    assert len(panel.figure.output.outputs) == 1 and panel.figure.renders >= 3
    assert _redraws(panel.figure) == panel.figure.renders
    assert _png(panel.figure.output.outputs[0]).startswith(PNG_MAGIC)
    # the dashboard shows the run's history: its loss line and heatmap hold the trainer's numbers
    assert panel.history is result.state.history
    loss_ax, heat_ax = fig.axes[:2]
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), [s.total for s in result.state.history.steps])
    np.testing.assert_allclose(np.asarray(_heatmap(fig).get_array()).reshape(tiny_loaded.num_layers, 3),
                               result.state.history.emergence()[2])
    coords = _heatmap(fig).get_coordinates()  # (rows + 1, cols + 1, 2): one row per layer, one col per snapshot
    assert coords.shape[0] - 1 == tiny_loaded.num_layers
    assert coords.shape[1] - 1 == len(result.state.history.snapshots) == 3  # steps 0, 1, 2
    assert "Trainable parameters" in _text(panel.output)
    assert checkpoint.is_checkpoint(tmp_path / "ckpt")
    assert lora.adapters(tiny_loaded.model)

    # a second run starts from the base model (adapters are replaced, not stacked) and, with force, overwrites
    panel.force = True
    panel.steps.value = 1
    again = panel.run()
    assert again is not None and again.state.step == 1 and panel.progress.value == panel.progress.max == 1
    assert panel.dashboard.fig is fig
    assert [s.step for s in panel.history.steps] == [1] and [s.step for s in panel.history.snapshots] == [0, 1]


def _statuses_at_evaluations(monkeypatch, status) -> list[str]:
    """The status line as it reads each time an evaluation of the model starts (baseline, final, ...)."""
    seen: list[str] = []
    evaluate_model = workflow.evaluate_model

    def recording(*args, **kwargs):
        seen.append(html.unescape(status.value))
        return evaluate_model(*args, **kwargs)

    monkeypatch.setattr(workflow, "evaluate_model", recording)
    return seen


def test_train_panel_status_names_each_stage_and_the_wall_time(tiny_loaded, monkeypatch):
    """While the base model and the trained model are evaluated the status says so (not a training step), the
    log hears the stages, and the last status gives the training time beside the whole click's wall time."""
    panel = TrainPanel(tiny_loaded, replace(TINY, steps=20, snapshot_every=10), answers=False)
    seen = _statuses_at_evaluations(monkeypatch, panel.status)
    bars: list[str] = []
    panel.progress.observe(lambda change: bars.append(change.new), names="bar_style")
    lines: list[str] = []
    result = panel.run(log=lines.append)
    assert result is not None
    assert seen == ["evaluating the base model...", "final evaluation..."]
    assert bars == ["info", "success"]  # a full bar during the final evaluation is told apart from a finished run
    steps = [ln for ln in lines if ln.startswith("training: step ")]
    assert [ln.split()[2] for ln in steps] == ["0/20...", *(f"{k}/20" for k in range(2, 21, 2))]  # a tenth at a time
    assert lines[0] == "evaluating the base model..." and lines[-2] == "final evaluation..."
    status = html.unescape(panel.status.value)
    assert lines[-1] == status and "done" not in "".join(lines[:-1])
    m = re.fullmatch(r"done: 20 steps, training (\d+\.?\d*) s, (\d+\.?\d*) s in all · canonical \d/8 → \d/8", status)
    assert m, status
    assert m[1] + " s" == seconds_text(result.state.seconds) and float(m[2]) >= float(m[1])


def test_sweep_panel_status_names_the_evaluations_and_says_done_of_the_whole_grid(tiny_loaded, tmp_path,
                                                                                    monkeypatch):
    panel = SweepPanel(tiny_loaded, tmp_path / "sweep", TINY, grid={"cls_weight": [0.5]}, answers=False)
    seen = _statuses_at_evaluations(monkeypatch, panel.status)
    assert panel.run() is not None
    assert seen == ["run 1 of 1: cls_weight=0.5 · evaluating the base model...",
                    "run 1 of 1: cls_weight=0.5 · final evaluation..."]
    assert re.fullmatch(r"done: the grid's one run has its row \(1 trained now\), \d+\.?\d* s in all",
                        html.unescape(panel.status.value)), panel.status.value
    panel.fields["cls_weight"].value = "0.5 0.7"
    assert panel.run() is not None
    assert re.fullmatch(r"done: all 2 runs have rows \(1 trained now, 1 had rows from earlier\), \d+\.?\d* s in all",
                        html.unescape(panel.status.value)), panel.status.value
    assert panel.run() is not None and html.unescape(panel.status.value) == "nothing to train: all 2 runs have rows"


def test_train_panel_fields_come_from_the_config_metadata(tiny_loaded):
    """Each shown field is generated from TrainConfig: its tooltip is the field's help, a field with choices is a
    dropdown of exactly those choices, and the panel's config reads every shown field back."""
    from dataclasses import fields

    from lazarus_nb.app.train_panel import PANEL_FIELDS
    from lazarus_nb.train.config import TrainConfig

    panel = TrainPanel(tiny_loaded, TINY)
    meta = {f.name: f.metadata for f in fields(TrainConfig)}
    for name in PANEL_FIELDS:
        widget = getattr(panel, name)
        assert widget.tooltip == meta[name]["help"], name
    assert list(panel.label_map.options) == list(meta["label_map"]["choices"])
    panel.label_map.value, panel.seed.value, panel.learning_rate.value = "permuted", 3, 1e-3
    panel.stop_when_readable.value, panel.stop_when_readable_value.value = True, 0.75
    cfg = panel.config()
    assert (cfg.label_map, cfg.seed, cfg.learning_rate, cfg.stop_when_readable) == ("permuted", 3, 1e-3, 0.75)
    assert cfg.num_samples == TINY.num_samples and cfg.snapshot_size == TINY.snapshot_size  # not shown: kept


def test_train_panel_bad_value_shows_message(tiny_loaded):
    panel = TrainPanel(tiny_loaded, TINY)
    panel.cls_weight.value = 2
    assert panel.run() is None  # no exception
    assert "cls_weight must be in [0, 1], got 2.0" in _text(panel.output)
    assert "cls_weight" in panel.status.value and panel.progress.bar_style == "danger"
    assert not lora.adapters(tiny_loaded.model)  # the model was not touched
    panel._on_click(panel.button)  # the button path reports the same way
    assert _text(panel.output).count("cls_weight must be") == 1  # output is cleared per run


def test_train_panel_existing_checkpoint_without_force(tiny_loaded, tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    panel = TrainPanel(tiny_loaded, TINY, checkpoint=tmp_path / "ckpt")
    assert panel.run() is None
    assert "already holds a checkpoint" in _text(panel.output)


def test_lens_explorer(tiny_loaded):
    explorer = LensExplorer(tiny_loaded)
    assert explorer.fig is not None  # the first canonical prompt is drawn on creation
    first = explorer.fig
    fig = explorer.show("81 / 9 = ")
    assert fig is explorer.fig and fig is not first
    lines = _data_lines(fig)
    assert len(lines) == 4 and sorted(ln.get_label() for ln in lines) == sorted(CLASSES)
    for ln in lines:
        y = np.asarray(ln.get_ydata(), dtype=float)
        assert y.shape == (tiny_loaded.num_layers,) and np.all((y >= 0) & (y <= 1))
    assert len(explorer.top) == explorer.top_k
    assert len(explorer.slot.output.outputs) == 1 and _redraws(explorer.slot) == 2
    assert f"layer {explorer.layer}" in explorer.table.value

    # the explorer's numbers are workflow.run_lens's, read with the explorer's class-token ids
    report = run_lens(tiny_loaded, ["81 / 9 = "], list(CLASSES), None, explorer.top_k,
                      class_tokens=explorer.class_tokens)
    rows = report.prompts[0].layers
    assert report.layers == list(range(tiny_loaded.num_layers))
    for ln in lines:
        np.testing.assert_array_equal(ln.get_xdata(), report.layers)
        np.testing.assert_array_equal(ln.get_ydata(), [r.targets[ln.get_label()].prob for r in rows])
    at = rows[explorer.layer]
    assert explorer.top == at.top
    # ... and those are the lens's own numbers for the class-token ids (read here without run_lens)
    tokens, last = prompt_batch(tiny_loaded.tokenizer, ["81 / 9 = "], tiny_loaded.context_length)
    r = readout(LogitLens(tiny_loaded.model), tokens, last, explorer.class_tokens.ids, None, explorer.top_k)
    by_word = {ln.get_label(): ln.get_ydata() for ln in lines}
    for k, c in enumerate(explorer.class_tokens.words):
        np.testing.assert_allclose(by_word[c], np.array(r.probs)[:, 0, k], rtol=1e-6)
    np.testing.assert_allclose([p for _, p in explorer.top], np.array(r.top_probs)[explorer.layer, 0], rtol=1e-6)
    for c in CLASSES:  # probabilities and tokens as format.prob and format.token write them
        assert f"<td>{c}</td><td style='text-align:right'>{prob(at.targets[c].prob)}</td>" in explorer.table.value
    for tok, p in at.top:
        assert f"<code>{html.escape(token(tok, None))}</code>" in explorer.table.value
        assert f"<td style='text-align:right'>{prob(p)}</td>" in explorer.table.value

    explorer.text.value = "What is 7 times 8? "  # a free prompt through the widget
    assert "7 times 8" in explorer.fig.axes[0].get_title()
    explorer.dropdown.value = CANONICAL[2].prompt
    assert "23 + 45" in explorer.fig.axes[0].get_title()
    assert explorer.show("   ") is None and "type a prompt" in _text(explorer.output)


def _titled_prompt(fig) -> str:
    """The prompt a lens figure names in its title ("Logit lens on '7 * 8 = ' ..." or a grid's "'7 * 8 = ': ...")."""
    m = re.search(r"'([^']*)'", fig.axes[0].get_title())
    assert m, fig.axes[0].get_title()
    return m[1]


def test_lens_explorer_controls_name_the_prompt_the_figures_show(tiny_loaded):
    """Whoever asks (a cell, the dropdown, the text box), the dropdown names a canonical prompt and the text box
    any other, the other control is cleared, and both tabs show that prompt; the grid tab never shows another
    prompt's grid as the current one."""
    explorer = LensExplorer(tiny_loaded)

    def named() -> str:
        assert (explorer.dropdown.value is None) != (explorer.text.value == "")  # exactly one control names it
        return explorer.dropdown.value or explorer.text.value

    assert named() == _titled_prompt(explorer.fig) == CANONICAL[0].prompt
    renders = explorer.slot.renders
    explorer.show("81 / 9 = ")  # a canonical prompt from a cell
    assert named() == _titled_prompt(explorer.fig) == "81 / 9 = " and explorer.dropdown.value == "81 / 9 = "
    assert explorer.slot.renders == renders + 1  # moving the controls did not show the prompt a second time
    assert _shown_title(explorer.slot) == explorer.fig.axes[0].get_title()  # what the browser reads
    explorer.show("What is 7 times 8? ")  # any other prompt
    assert named() == _titled_prompt(explorer.fig) == "What is 7 times 8? " and explorer.dropdown.value is None
    assert "computed when this tab is opened" in _text(explorer.grid_slot.output)  # not a stale grid
    explorer.text.value = "12 * 5 = "  # a canonical prompt typed: the dropdown names it
    assert named() == _titled_prompt(explorer.fig) == "12 * 5 = " and explorer.text.value == ""

    waits = []
    wait = explorer.grid_slot.wait
    explorer.grid_slot.wait = lambda text: (waits.append(text), wait(text))
    explorer.tabs.selected_index = GRID_TAB
    assert waits[-1] == "computing the logit-lens grid of '12 * 5 = '..."  # said before the grid is computed
    assert _titled_prompt(explorer.grid_fig) == "12 * 5 = " and len(explorer.grid_slot.output.outputs) == 1
    assert explorer.grid_slot.output.outputs[0]["output_type"] == "display_data"
    grid = explorer.show_grid("48 / 6 = ")  # a grid of another prompt shows that prompt everywhere
    assert named() == _titled_prompt(explorer.fig) == _titled_prompt(grid) == "48 / 6 = "


def test_the_grid_tab_shows_the_grid_at_its_own_width(tiny_loaded):
    """The grid's PNG is marked unconfined (JupyterLab then shows it at its pixel width, not shrunk to the page)
    and its output area scrolls; the other figure slots keep fitting the page."""
    explorer = LensExplorer(tiny_loaded)
    explorer.show_grid()
    (out,) = explorer.grid_slot.output.outputs
    assert out["metadata"] == {"image/png": {"unconfined": True}}
    assert explorer.grid_slot.output.layout.overflow == "auto"
    assert explorer.slot.output.outputs[0]["metadata"] == {}


def test_lens_explorer_text_box_refuses_a_too_long_prompt_with_the_sentence(tiny_loaded):
    """A prompt over the limit typed into the text box: the one sentence under the explorer, no traceback, the
    figure of the last good prompt kept; a prompt of exactly the limit is read."""
    from lazarus_nb.data.tokens import prompt_limit

    limit = prompt_limit(tiny_loaded.context_length)
    at_limit = ("1234567890" * limit)[:limit]
    assert len(tiny_loaded.tokenizer.encode(at_limit)) == limit  # one token per digit (guard on the test's premise)
    explorer = LensExplorer(tiny_loaded)
    shown = explorer.fig
    explorer.text.value = at_limit + "1"
    out = _text(explorer.output)
    assert out.startswith("Error: the prompt ('12345678901234567890…', ") and out.count("\n") == 1, out
    assert f"is {limit + 1:,} tokens long, over the limit of {limit:,} tokens" in out
    assert "Traceback" not in out and explorer.fig is shown
    assert explorer.show(at_limit) is explorer.fig is not shown and _text(explorer.output) == ""


def test_lens_explorer_stars_class_tokens_among_the_top_tokens(tiny_loaded):
    """A class token in the top list is starred at its own place (rank = its index in the list)."""
    explorer = LensExplorer(tiny_loaded)
    tokens, last = prompt_batch(tiny_loaded.tokenizer, ["7 * 8 = "], tiny_loaded.context_length)
    r = readout(LogitLens(tiny_loaded.model), tokens, last, explorer.class_tokens.ids, [explorer.layer], 1)
    explorer.top_k = int(np.array(r.ranks).min()) + 1  # just deep enough to reach the best-ranked class token
    explorer.show("7 * 8 = ")
    r = readout(LogitLens(tiny_loaded.model), tokens, last, explorer.class_tokens.ids, [explorer.layer], explorer.top_k)
    top_ids = np.array(r.top_ids)[0, 0].tolist()
    by_id = dict(zip(explorer.class_tokens.ids, explorer.class_tokens.words))
    expected = [(i, by_id[t]) for i, t in enumerate(top_ids, 1) if t in by_id]
    starred = re.findall(r"<tr><td>(\d+)</td><td><code>[^<]*</code> &#9733; (\w+)</td>", explorer.table.value)
    assert expected and [(int(i), w) for i, w in starred] == expected


def test_lens_explorer_on_adapted_model_with_checkpoint_tokens(tiny_loaded, tiny_model_dir, tmp_path):
    TrainPanel(tiny_loaded, TINY, checkpoint=tmp_path / "ckpt", answers=False).run()
    adapted = load_model(str(tiny_model_dir("llama")))
    saved = checkpoint.load_adapter(adapted, tmp_path / "ckpt")
    explorer = LensExplorer(adapted, class_tokens=saved.class_tokens, classifier_layer=saved.classifier_layer)
    assert explorer.title == "adapted model"
    assert explorer.class_tokens.ids == tuple(saved.class_tokens.values())
    assert len(_data_lines(explorer.show(CANONICAL[0].prompt))) == 4


def test_ensure_checkpoint_trains_only_when_missing(tiny_model_dir, tmp_path):
    p = Profile("smoke", str(tiny_model_dir("llama")), tmp_path, probe_per_class=2, answers=False)
    path, trained = ensure_checkpoint(p)
    assert trained and path == tmp_path / "checkpoint" and checkpoint.is_checkpoint(path)
    assert ensure_checkpoint(p) == (path, False)
    lines: list[str] = []  # notebook 04 verifies it with log=print: each stage is a line as it starts
    assert workflow.verify(path, answers=False, log=lines.append).matches_training is True
    stages = ["evaluating the base model...", f"loading the adapter from disk ({path})...", "evaluating the adapter..."]
    assert lines[0] == f"Loading model: {p.model}" and lines[-3:] == stages
