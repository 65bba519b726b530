"""The steps as the CLI, the notebooks and the widgets run them: ``run.probe_family``, ``run.baseline_lens``,
``run.run_dual_reward``, ``run.verify``, ``run.run_demo``; a sweep is ``run.sweep.sweep`` (its module shares the
name).

Names resolve on first use (PEP 562), so importing the sub-package stays free: the CLI checks a request before
it loads mlx.
"""

_EXPORTS = {
    "load": "lazarus_nb.run.steps:load",
    "last_token_hidden": "lazarus_nb.run.steps:last_token_hidden",
    "run_probe": "lazarus_nb.run.steps:run_probe",
    "probe_family": "lazarus_nb.run.steps:probe_family",
    "probe_classes": "lazarus_nb.run.steps:probe_classes",
    "run_lens": "lazarus_nb.run.steps:run_lens",
    "baseline_lens": "lazarus_nb.run.steps:baseline_lens",
    "run_dual_reward": "lazarus_nb.run.steps:run_dual_reward",
    "resume_state": "lazarus_nb.run.steps:resume_state",
    "verify": "lazarus_nb.run.steps:verify",
    "run_demo": "lazarus_nb.run.demo:run_demo",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # why here: the table above is resolved lazily, so this __init__ imports nothing

    module, _, attr = _EXPORTS[name].partition(":")
    value = importlib.import_module(module)
    return getattr(value, attr) if attr else value
