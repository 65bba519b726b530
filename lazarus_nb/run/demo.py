"""The demo: the four steps headless, writing JSON results and figures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lazarus_nb import files
from lazarus_nb.data.prompts import (
    CANONICAL,
    DEMO_PROBE_PROMPTS,
)
from lazarus_nb.model.load import DEFAULT_MODEL
from lazarus_nb.results.demo import DemoResult
from lazarus_nb.run.steps import Log, baseline_lens, load, probe_family, quiet, run_dual_reward, verify
from lazarus_nb.show import figures
from lazarus_nb.show import text as report
from lazarus_nb.show.plots import output as plot_output
from lazarus_nb.train.callbacks import TrainingCallback
from lazarus_nb.train.config import DEMO_TRAIN, TrainConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def check_demo_dir(path: str | Path, force: bool = False, field: str = "output") -> Path:
    """Refuse (one sentence, before anything runs) a results directory the demo must not write into: a file, one
    that already holds files (only with ``force``), or one whose ``checkpoint`` is a file."""
    root = files.check_output(path, "dir", force, field=field)
    files.check_output(root / "checkpoint", "dir", True, field=field)
    return root


def demo_figures(step: str, result: Any, classifier_layer: int) -> dict[str, Figure]:
    """The demo's figures of one step's result, by file name: "probe" (dict of ProbeReport), "train"
    (DualRewardResult), "verify" (VerifyResult). The figures themselves come from :mod:`figures`, the one
    place that turns results into figures for the demo, the notebooks and the widgets."""
    if step == "probe":
        return {"probe_accuracy.png": figures.probe_figure({f: rep.result for f, rep in result.items()},
                                                            classifier_layer)}
    if step == "train":
        history = result.state.history
        heatmap, curves = figures.emergence_figures(history, classifier_layer)
        return {"emergence_heatmap.png": heatmap, "emergence_curves.png": curves,
                "loss_curves.png": figures.loss_figure(history)}
    if step == "verify":
        return {"lens_before_after.png": figures.lens_before_after_figure(result.base, result.adapted)}
    raise ValueError(f"no demo figures for step '{step}'")


def run_demo(
    out_dir: str | Path,
    model: str = DEFAULT_MODEL,
    config: TrainConfig = DEMO_TRAIN,
    num_prompts: int = DEMO_PROBE_PROMPTS,
    answers: bool = True,
    force: bool = False,
    log: Log = quiet,
    callback: TrainingCallback | None = None,
) -> DemoResult:
    """The four steps headless: probes (symbolic and word prompts), baseline lens, dual-reward training with a
    checkpoint in ``out_dir/checkpoint``, verify with the adapter loaded from disk. Writes each step's JSON
    (``probe.json``, ``baseline_lens.json``, ``dual_reward.json``, ``verify.json``) and the figures."""

    root = check_demo_dir(out_dir, force)
    t_start = time.perf_counter()
    loaded = load(model, log)
    layer = config.for_model(loaded.num_layers).classifier_layer  # any remaining problem: before anything is written
    written: dict[str, str] = {}

    def save(name: str, payload: Any) -> None:
        written[name] = str(files.write_json(root / name, payload))

    def save_figures(step: str, result: Any) -> None:
        for name, fig in demo_figures(step, result, layer).items():
            written[name] = str(plot_output.save(fig, root / name))

    for line in report.demo_settings(config, num_prompts, answers):
        log(line)
    log("")
    log(f"Step 1/4: baseline linear probes ({num_prompts} prompts per family, every layer)")
    probes = {family: probe_family(loaded, family, num_prompts, config.seed) for family in ("symbolic", "words")}
    for rep in probes.values():
        log(report.probe_family_line(rep, layer))
    save("probe.json", {family: rep.to_dict() for family, rep in probes.items()})
    save_figures("probe", probes)

    log("")
    log(f"Step 2/4: baseline logit lens on the {len(CANONICAL)} canonical prompts (every layer)")
    baseline = baseline_lens(loaded, config)
    for line in report.canonical_lens_table(baseline):
        log(line)
    save("baseline_lens.json", baseline)

    ckpt = root / "checkpoint"
    log("")
    log("Step 3/4: dual-reward training")
    training = run_dual_reward(loaded, config, output=ckpt, force=force, callback=callback, answers=answers, log=log)
    for line in report.training_summary(training):
        log(line)
    save("dual_reward.json", training)
    save_figures("train", training)
    del loaded  # verify loads the base model fresh; two copies need not be in memory

    log("")
    log(f"Step 4/4: verify: the base model again, then the adapter loaded from disk ({ckpt})")
    verified = verify(ckpt, model=model, answers=answers, trained=training.final, base=training.baseline)
    for line in report.verification(verified):
        log(line)
    save("verify.json", verified)
    save_figures("verify", verified)
    written["checkpoint"] = str(ckpt)
    return DemoResult(root, probes, baseline, training, verified, written, time.perf_counter() - t_start)
