"""The logit-lens grid (lens_grid.py, grid_plots.py, figures.lens_grid_figure), its tab in LensExplorer and
``logit-lens --figure`` on the tiny random llama."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib

import lazarus_nb  # noqa: F401  (before anything imports mlx: loads the optimized BLAS first)

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

from lazarus_nb import LazarusError  # noqa: E402
from lazarus_nb.app import cli  # noqa: E402
from lazarus_nb.app.lens_explorer import GRID_TAB, LensExplorer  # noqa: E402
from lazarus_nb.measure import lens_grid  # noqa: E402
from lazarus_nb.model import lora  # noqa: E402
from lazarus_nb.model.hooks import forward_hidden
from lazarus_nb.model.lens import LogitLens  # noqa: E402
from lazarus_nb.model.load import load_model  # noqa: E402
from lazarus_nb.show import figures  # noqa: E402
from lazarus_nb.show.plots.grid import cell_text  # noqa: E402
from lazarus_nb.train import checkpoint  # noqa: E402
from lazarus_nb.train.loop import TrainConfig, prepare  # noqa: E402

PROMPT = "What is 7 times 8? "


@pytest.fixture
def tiny_loaded(tiny_model_dir):
    return load_model(str(tiny_model_dir("llama")))


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _own_lens(loaded, prompt: str) -> tuple[list[int], list[np.ndarray], np.ndarray]:
    """(token ids, per layer the lens's (T, V) logits, the model's own (T, V) output logits), float64."""
    ids = loaded.tokenizer.encode(prompt)
    tokens = mx.array([ids])
    hidden, _ = forward_hidden(loaded.model, tokens)
    lens = LogitLens(loaded.model)
    per_layer = [np.array(lens(h[0]).astype(mx.float32), dtype=np.float64) for h in hidden]
    return ids, per_layer, np.array(loaded.model(tokens)[0].astype(mx.float32), dtype=np.float64)


def _adapt(loaded, seed: int | None) -> None:
    """V/O adapters on every block; B = 0 (the adapted model is exactly the base) or random (seed)."""
    lora.apply_lora(loaded.model, lora.LoraConfig(rank=4))
    if seed is not None:
        mx.random.seed(seed)
        for m in lora.adapters(loaded.model).values():
            m.lora_b = 0.5 * mx.random.normal(m.lora_b.shape)


# ---------------------------------------------------------------- the grid's numbers


def test_grid_is_the_argmax_and_softmax_of_the_lens_at_every_layer_and_position(tiny_loaded):
    grid = lens_grid.lens_grid(tiny_loaded, PROMPT)
    ids, per_layer, own = _own_lens(tiny_loaded, PROMPT)
    n = len(ids)
    assert grid.layers == list(range(tiny_loaded.num_layers))
    assert grid.positions == list(range(n)) and grid.n_tokens == n
    assert grid.top_ids.shape == grid.top_probs.shape == (tiny_loaded.num_layers, n)
    decode = tiny_loaded.tokenizer.decode
    assert grid.tokens == [decode([i]) for i in ids]
    assert grid.next_tokens == [decode([i]) for i in ids[1:]] + [None]
    for layer, logits in enumerate(per_layer):
        probs = _softmax(logits)
        np.testing.assert_array_equal(grid.top_ids[layer], logits.argmax(axis=-1))
        np.testing.assert_allclose(grid.top_probs[layer], probs.max(axis=-1), rtol=1e-4)
        assert grid.top_tokens[layer] == [decode([int(i)]) for i in logits.argmax(axis=-1)]
    # the last layer's grid row is the model's own prediction at every position
    np.testing.assert_array_equal(grid.top_ids[-1], own.argmax(axis=-1))
    np.testing.assert_allclose(grid.top_probs[-1], _softmax(own).max(axis=-1), rtol=1e-4)


def test_grid_layers_positions_and_refusals(tiny_loaded):
    assert lens_grid.grid_layers(30) == list(range(30))
    deep = lens_grid.grid_layers(80)
    assert len(deep) == lens_grid.MAX_ROWS and deep[0] == 0 and deep[-1] == 79 and deep == sorted(set(deep))
    ids, per_layer, _ = _own_lens(tiny_loaded, PROMPT)
    cut = lens_grid.lens_grid(tiny_loaded, PROMPT, layers=[1, 3], max_positions=3)
    assert cut.layers == [1, 3] and cut.positions == [len(ids) - 3, len(ids) - 2, len(ids) - 1]
    assert cut.n_tokens == len(ids) and cut.next_tokens[-1] is None
    np.testing.assert_array_equal(cut.top_ids, [per_layer[1][-3:].argmax(-1), per_layer[3][-3:].argmax(-1)])
    with pytest.raises(LazarusError, match="outside this model's layers 0..3"):
        lens_grid.lens_grid(tiny_loaded, PROMPT, layers=[4])
    with pytest.raises(LazarusError, match="over the limit"):  # the prompt length rule (tokens.encode_prompts)
        lens_grid.lens_grid(tiny_loaded, "1234567890" * 60)


def test_base_and_adapted_grids_differ_with_a_nonzero_adapter_and_match_with_a_zero_one(tiny_loaded, tiny_model_dir):
    base_only = lens_grid.compare(tiny_loaded, PROMPT)
    assert [g.label for g in base_only] == [lens_grid.BASE]

    _adapt(tiny_loaded, None)  # B = 0: the adapter changes nothing
    base, adapted = lens_grid.compare(tiny_loaded, PROMPT)
    assert (base.label, adapted.label) == (lens_grid.BASE, lens_grid.ADAPTED)
    np.testing.assert_array_equal(adapted.top_ids, base.top_ids)
    np.testing.assert_array_equal(adapted.top_probs, base.top_probs)

    other = load_model(str(tiny_model_dir("llama")))
    _adapt(other, seed=1)
    base, adapted = lens_grid.compare(other, PROMPT)
    # the base grid is the model without adapters (read with them switched off), the adapted one differs
    np.testing.assert_array_equal(base.top_ids, base_only[0].top_ids)
    np.testing.assert_allclose(base.top_probs, base_only[0].top_probs, rtol=1e-6)
    assert np.abs(adapted.top_probs - base.top_probs).max() > 1e-3
    assert (adapted.top_ids != base.top_ids).any()
    _, per_layer, own = _own_lens(other, PROMPT)  # adapters on: the adapted grid is this model's own lens
    np.testing.assert_array_equal(adapted.top_ids, np.stack([x.argmax(-1) for x in per_layer]))
    np.testing.assert_array_equal(adapted.top_ids[-1], own.argmax(-1))
    assert lora.adapters(other.model) and all(m.scale != 0 for m in lora.adapters(other.model).values())


# ---------------------------------------------------------------- the figure


def test_cell_text_shows_spaces_and_newlines_and_cuts_long_tokens():
    assert cell_text(" 56") == "␣56" and cell_text("a\nb") == "a↵b" and cell_text("\t") == "\\t"
    assert cell_text(" multiplication") == "␣multipl…" and len(cell_text("x" * 40)) == 9
    assert cell_text("中") == "\ufffd"  # not in the bundled font: a visible replacement, not an empty box


def test_grid_figure_cells_are_the_grid(tiny_loaded):
    _adapt(tiny_loaded, seed=2)
    rows = [lens_grid.compare(tiny_loaded, PROMPT), lens_grid.compare(tiny_loaded, "7 * 8 = ", layers=[0, 2])]
    fig = figures.lens_grid_figure(rows)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 4
    for ax, grid in zip(panels, [g for row in rows for g in row]):
        (image,) = [im for im in ax.images if isinstance(im, AxesImage)]
        np.testing.assert_array_equal(image.get_array(), grid.top_probs)
        assert image.get_clim() == (0.0, 1.0)
        texts = {(round(t.get_position()[0]), round(t.get_position()[1])): t.get_text() for t in ax.texts}
        assert texts == {(x, y): cell_text(grid.top_tokens[y][x])
                         for y in range(len(grid.layers)) for x in range(len(grid.positions))}
        assert [t.get_text() for t in ax.get_xticklabels()] == [cell_text(t) for t in grid.tokens]
        assert [t.get_text() for t in ax.get_yticklabels()] == [str(v) for v in grid.layers]
        assert grid.label in ax.get_title() and repr(grid.prompt) in ax.get_title()


# ---------------------------------------------------------------- the explorer's grid tab


def test_explorer_grid_tab_is_computed_when_opened_and_follows_the_prompt(tiny_loaded):
    _adapt(tiny_loaded, seed=3)
    explorer = LensExplorer(tiny_loaded)
    assert explorer.grid_fig is None and explorer.grid_slot.renders == 0  # not computed until the tab is opened
    explorer.tabs.selected_index = GRID_TAB
    assert explorer.grid_prompt == explorer.prompt and explorer.grid_slot.renders == 1
    assert [g.label for g in explorer.grids] == [lens_grid.BASE, lens_grid.ADAPTED]
    expected = lens_grid.compare(tiny_loaded, explorer.prompt)
    for got, want in zip(explorer.grids, expected):
        np.testing.assert_array_equal(got.top_ids, want.top_ids)
    explorer.text.value = PROMPT  # with the grid tab open, a new prompt redraws the grid too
    assert explorer.grid_prompt == PROMPT and explorer.grid_slot.renders == 2
    assert explorer.grids[0].tokens == [tiny_loaded.tokenizer.decode([i]) for i in tiny_loaded.tokenizer.encode(PROMPT)]
    explorer.tabs.selected_index = 0
    explorer.tabs.selected_index = GRID_TAB  # nothing new to compute
    assert explorer.grid_slot.renders == 2
    explorer.output.outputs = ()
    assert explorer.show_grid("1234567890" * 60) is None
    text = "".join(o.get("text", "") for o in explorer.output.outputs)
    assert text.startswith("Error: the prompt (") and "Traceback" not in text and explorer.grid_prompt == PROMPT


# ---------------------------------------------------------------- logit-lens --figure


def _cli(*args: object) -> subprocess.CompletedProcess:
    from lazarus_nb.model.load import home

    env = {**os.environ, "LAZARUS_NB_HOME": str(home())}
    env.pop("LAZARUS_NB_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "lazarus_nb", "introspect", "logit-lens", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def step0_checkpoint(tiny_model_dir, tmp_path_factory) -> Path:
    loaded = load_model(str(tiny_model_dir("llama")))
    path = tmp_path_factory.mktemp("step0") / "ckpt"
    checkpoint.save(path, loaded, prepare(loaded, TrainConfig(steps=1, num_samples=8, heldout_samples=4)))
    return path


@pytest.mark.slow
def test_cli_figure_writes_the_grid_png(tiny_model_dir, step0_checkpoint, tmp_path):
    model = tiny_model_dir("llama")
    alone, beside = tmp_path / "grid.png", tmp_path / "adapter.png"
    r = _cli("-m", model, "--prompts", "7 * 8 = |23 + 45 = ", "--figure", alone)
    assert r.returncode == 0, r.stderr
    assert f"Logit-lens grid written to: {alone}" in r.stdout
    r = _cli("-m", model, "--prompts", "7 * 8 = |23 + 45 = ", "--adapter", step0_checkpoint, "--figure", beside)
    assert r.returncode == 0, r.stderr
    one, two = mpimg.imread(alone), mpimg.imread(beside)  # readable PNGs
    assert one.ndim == 3 and one.shape[0] > 400 and one.shape[1] > 600
    assert two.shape[0] == one.shape[0] and two.shape[1] > 1.3 * one.shape[1]  # base beside adapted
    assert one.std() > 0.05  # not a blank image
    # an existing figure is never overwritten without --force
    before = alone.read_bytes()
    r = _cli("-m", model, "--figure", alone)
    assert r.returncode == 2 and "--force" in r.stderr and alone.read_bytes() == before


def test_cli_figure_help_states_the_limits(capsys):
    with pytest.raises(SystemExit):
        cli.main(["introspect", "logit-lens", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"for the first {lens_grid.MAX_PROMPTS} prompts" in text
    assert f"{lens_grid.MAX_ROWS} evenly spaced" in text and f"last {lens_grid.MAX_POSITIONS} positions" in text
    assert ".png, .svg or .pdf" in text


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing" / "grid.png", "the directory '{d}/missing' does not exist"),
    (lambda d: d / "grid.jpg", "must end in .png, .svg or .pdf"),
    (lambda d: d, "must end in .png, .svg or .pdf"),
    (lambda d: d / "dir.png", "is a directory"),
    (lambda d: d / "file.txt" / "grid.png", "the directory '{d}/file.txt' does not exist"),
], ids=["missing-dir", "suffix", "a-directory", "directory-named-png", "parent-is-a-file"])
def test_cli_bad_figure_path_is_one_sentence_before_the_model_loads(tmp_path, capsys, make, message):
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "file.txt").write_text("x")
    # a model that does not exist: the figure path is refused first, so the model is never looked at
    code = cli.main(["introspect", "logit-lens", "-m", str(tmp_path / "no-such-model"), "--figure",
                     str(make(tmp_path))])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("error: --figure ") and err.count("\n") == 1, err
    assert message.format(d=tmp_path) in err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write into any directory")
def test_figure_path_in_a_read_only_directory_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(LazarusError, match="is not writable"):
        figures.check_figure_path(locked / "grid.png")
