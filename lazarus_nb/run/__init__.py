"""The steps as the CLI, the notebooks and the widgets run them: ``run.probe_family``, ``run.baseline_lens``,
``run.run_dual_reward``, ``run.verify``, ``run.run_demo``; a sweep is ``run.sweep.sweep`` (its module shares the
name); the reader-only baseline is ``run.reader.reader_baseline``; the causal tests are activation patching
(``run.activation_patching`` and, one pair at one cell, ``run.patch_pair``), ``run.ablation.subspace_ablation``
and ``run.steering.steering``.

Names resolve on first use (:mod:`lazarus_nb.exports`).
"""

from lazarus_nb.exports import lazy

_EXPORTS = {
    "load": "lazarus_nb.run.steps:load",
    "last_token_hidden": "lazarus_nb.measure.evaluate:last_token_hidden",
    "run_probe": "lazarus_nb.run.steps:run_probe",
    "probe_family": "lazarus_nb.run.steps:probe_family",
    "probe_classes": "lazarus_nb.run.steps:probe_classes",
    "run_lens": "lazarus_nb.run.steps:run_lens",
    "baseline_lens": "lazarus_nb.run.steps:baseline_lens",
    "run_dual_reward": "lazarus_nb.run.steps:run_dual_reward",
    "resume_state": "lazarus_nb.run.steps:resume_state",
    "verify": "lazarus_nb.run.steps:verify",
    "run_demo": "lazarus_nb.run.demo:run_demo",
    "reader": "lazarus_nb.run.reader",
    "ablation": "lazarus_nb.run.ablation",
    "steering": "lazarus_nb.run.steering",
    "patching": "lazarus_nb.run.patching",
    "activation_patching": "lazarus_nb.run.patching:activation_patching",
    "patch_pair": "lazarus_nb.run.patching:patch_pair",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy(__name__, _EXPORTS)
