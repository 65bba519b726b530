"""A dual-reward run, checked once: :func:`train_request` holds every rule a run can be refused for before it
trains (the settings, the layer count when known, the checkpoint directory, the run to continue, the ranks) and
returns a frozen :class:`TrainRequest`, which ``run_dual_reward`` trusts: it checks none of it again and reads no
``config.json`` again. The CLI builds one before the model loads; a notebook passes a TrainConfig and
``run_dual_reward`` builds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lazarus_nb.train import checkpoint
from lazarus_nb.train.config import TrainConfig
from lazarus_nb.train.record import RunRecord


@dataclass(frozen=True)
class TrainRequest:
    """A checked dual-reward run: ``config`` its settings (a continued run's are its record's), ``output`` its
    checkpoint directory (None: nothing is written), ``record`` the run it continues (None: a new run)."""

    config: TrainConfig
    output: Path | None = None
    record: RunRecord | None = None

    @property
    def resume(self) -> bool:
        return self.record is not None


def train_request(config: TrainConfig, output: str | Path | None = None, force: bool = False,
                  record: RunRecord | None = None, num_layers: int | None = None,
                  model_config: Mapping[str, Any] | None = None, ranks: int = 1) -> TrainRequest:
    """Check a run once, before anything trains (one sentence otherwise):

    * a new run (``record`` None): ``config`` by ``TrainConfig.check`` (layer ranges when ``num_layers`` is
      known), and ``output`` a directory it may write (``checkpoint.check_writable``; over a checkpoint only with
      ``force``);
    * a continued run: ``record`` is the checkpoint's in ``output`` (``checkpoint.resumable_record``, read by the
      caller, which may need it first: the run's model), its settings are the run's, and with ``model_config``
      (the model's config.json) its adapter must fit the model (``checkpoint.check_adapter``);
    * ``ranks`` > 1 (data-parallel): the settings split over the ranks (``TrainConfig.check_ranks``)."""
    if record is None:
        config.check(num_layers)
        if output is not None:
            checkpoint.check_writable(output, force)
    else:
        config = record.train
        if model_config is not None:
            checkpoint.check_adapter(output, dict(model_config), record)  # another model, unreadable weights
    if ranks > 1:
        config.check_ranks(ranks)
    return TrainRequest(config, Path(output) if output is not None else None, record)
