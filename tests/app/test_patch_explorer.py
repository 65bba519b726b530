"""The patching explorer on a tiny model: its controls drive one patch, and that patch is the batched result's cell."""

from __future__ import annotations

import html
import math

from lazarus_nb.app.patch_explorer import PatchExplorer
from lazarus_nb.run.patching import activation_patching

PAIRS = ["7 * 8 = |7 + 8 = ", "9 - 3 = |9 + 3 = "]


def test_the_explorer_shows_the_batched_cell_it_names(tiny_llama):
    result = activation_patching(tiny_llama, pairs=PAIRS)
    explorer = PatchExplorer(tiny_llama, result)
    assert explorer.slot.renders == 1 and explorer.view is not None
    assert explorer.position.value == len(result.tokens[0]) - 1  # a pair starts at its last prompt position

    first = result.ids[1].first
    view = explorer.show(pair=1, layer=2, position=first)
    assert (explorer.pair.value, explorer.layer.value, explorer.position.value) == (1, 2, first)
    assert (view.layer, view.position, view.pair) == (2, first, result.pairs[1])
    assert "patched at L2" in explorer.slot.fig._suptitle.get_text()
    assert result.pairs[1].name in html.unescape(explorer.text.value)

    # the widget's one patch, scored from its own three runs, is the batched computation's effect at that cell
    def ld(run):
        return math.log(run.p_source) - math.log(run.p_target)

    effect = (ld(view.patched) - ld(view.target)) / (ld(view.source) - ld(view.target))
    assert abs(effect - result.models[0].pairs[1].effect[2, first]) < 1e-3

    # moving a control redraws: a new pair starts again at its last position
    explorer.pair.value = 0
    assert explorer.position.value == len(result.tokens[0]) - 1 and explorer.view.pair == result.pairs[0]
    assert explorer.slot.renders == 3 and explorer.output.outputs == ()
