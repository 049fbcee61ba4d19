"""The ``search`` section: a hyperparameter search space over schema paths, and its budget.

``python -m backend.scripts.tune --track rl|supervised --config FILE --trials N`` reads it.
Each key of ``space`` is a dotted path into the same config (``encoder.d_model``,
``training.learning_rate``, ``env.sequence_length``; for the lab ``training.learning_rate``,
``sequence_length``, ...), each value either a list of ``choices`` or a numeric range
(``low``/``high``, optionally ``log``, ``step``, ``integer``). The objective is always
measured on validation ranges before the first test range of the main job's windows (see
``backend/scripts/tune.py``); ``tuning_trials`` is what the tuner writes into the best
config so that the main job's deflated Sharpe ratio counts the search.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from backend.utils.config_model import ConfigModel, NonNegInt, PosInt, StrictBool

__all__ = ["FORBIDDEN_SECTIONS", "ParamSpace", "SearchConfig", "check_space_paths"]

FORBIDDEN_SECTIONS: tuple[str, ...] = ("data", "walk_forward", "search", "preset", "modes")
"""Top-level keys a search may not vary: they decide which bars are tested, or the search."""

_Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
_Choice = Any


class ParamSpace(ConfigModel):
    """One searched parameter: ``choices`` (any YAML values) or a ``low``..``high`` range."""

    choices: tuple[_Choice, ...] | None = None
    """Values to choose from (numbers, strings, booleans, lists such as ``net_arch``)."""
    low: _Number | None = None
    """Smallest value of a numeric range (inclusive)."""
    high: _Number | None = None
    """Largest value of a numeric range (inclusive)."""
    log: StrictBool = False
    """Sample the range on a log scale (learning rates); needs ``low > 0``."""
    step: Annotated[float, Field(strict=True, gt=0.0, allow_inf_nan=False)] | None = None
    """Grid step of the range (not with ``log``)."""
    integer: StrictBool = False
    """Integer range (``low``/``high`` must be whole numbers)."""

    @model_validator(mode="after")
    def _one_kind(self) -> ParamSpace:
        has_range = self.low is not None or self.high is not None
        if self.choices is not None:
            if has_range or self.log or self.step is not None or self.integer:
                raise ValueError("give either choices or a low/high range, not both")
            if len(self.choices) < 1:
                raise ValueError("choices: give at least one value")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give choices, or both low and high")
        if not self.low < self.high:
            raise ValueError(f"low {self.low} must be below high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log range needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("step and log cannot be combined")
        if self.integer and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError("an integer range needs whole-number low and high")
        return self

    def __hash__(self) -> int:
        """Hash of the JSON form (``choices`` may hold lists, which do not hash)."""
        return hash(json.dumps(self.model_dump(mode="json"), sort_keys=True))

    def grid_size(self) -> float:
        """Number of distinct values (``inf`` for a continuous range)."""
        if self.choices is not None:
            return float(len(self.choices))
        assert self.low is not None and self.high is not None
        if self.integer:
            step = self.step or 1.0
            return math.floor((self.high - self.low) / step) + 1.0
        if self.step is not None:
            return math.floor((self.high - self.low) / self.step) + 1.0
        return math.inf


class SearchConfig(ConfigModel):
    """What ``backend.scripts.tune`` searches, how, and what it recorded."""

    space: Annotated[dict[str, ParamSpace], Field(json_schema_extra={"x-yaml-only": True})] = {}
    """``{schema path: choices or range}``; empty means there is nothing to tune. Paths may
    not enter ``data``, ``walk_forward``, ``search``, ``preset`` or ``modes`` (they decide the
    test ranges). Example: ``{encoder.d_model: {choices: [256, 512, 1024]},
    training.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}}``."""
    windows: PosInt = 2
    """Inner walk-forward windows the objective averages: the latest ones that end before
    the first test range of the main job (their validation ranges are scored)."""
    sampler: Literal["tpe", "random"] = "tpe"
    """Optuna sampler: TPE (Bergstra et al. 2011) or uniform random; seeded by the run seed."""
    pruner: Literal["median", "none"] = "median"
    """Stop a trial whose running objective (RL: reported after every validation evaluation
    and after each window) is below the median of earlier trials at the same point (Optuna
    ``MedianPruner``), or never prune."""
    prune_warmup_evaluations: NonNegInt = 0
    """RL: validation evaluations of each inner window that are reported but never pruned
    on (the first evaluations of a young policy say little about its last)."""
    trial_timesteps: PosInt | None = None
    """SAC steps of each trial (RL; ``null``: the config's ``training.total_timesteps``). A
    shorter budget ranks configurations at lower cost (a low-fidelity search); the best
    config keeps the config's own ``total_timesteps`` for the main job. Trials stop at the
    last validation evaluation within the budget (a multiple of
    ``training.eval_every_steps``): later steps cannot change the objective."""
    startup_trials: NonNegInt = 3
    """Trials run in full before the pruner and TPE start using the history."""
    tuning_trials: NonNegInt = 0
    """Trials of the search that chose this config (written by the tuner into the best
    config). The main job's deflated Sharpe ratio counts them with its own modes x seeds."""

    def __hash__(self) -> int:
        """Hash of the JSON form: configs are hashable values, ``space`` is a mapping."""
        return hash(json.dumps(self.model_dump(mode="json"), sort_keys=True))

    @field_validator("space")
    @classmethod
    def _paths(cls, value: dict[str, ParamSpace]) -> dict[str, ParamSpace]:
        for path in value:
            parts = path.split(".")
            if not path or any(not p for p in parts):
                raise ValueError(f"{path!r}: expected a dotted schema path like encoder.d_model")
            if parts[0] in FORBIDDEN_SECTIONS:
                raise ValueError(
                    f"{path!r}: a search may not vary {parts[0]!r} (it decides the test ranges or "
                    "the search itself)"
                )
        return value


def check_space_paths(config: BaseModel, space: dict[str, ParamSpace]) -> None:
    """Every key of ``space`` must name a field of ``config`` (its chosen union members).

    A path may enter a free-form mapping (the lab's ``encoders``) by any key; the value is
    then checked when the tuner validates each choice.

    Raises:
        ValueError: naming the path, the first unknown part and the valid fields there.
    """
    for path in space:
        node: Any = config
        parts = path.split(".")
        for i, part in enumerate(parts):
            if isinstance(node, dict):
                node = node.get(part, {})
                continue
            fields = type(node).model_fields if isinstance(node, BaseModel) else {}
            if part not in fields:
                where = ".".join(parts[:i]) or "the config"
                raise ValueError(
                    f"search.space: {path!r}: {part!r} is not a field of {where} "
                    f"(fields: {sorted(fields) if fields else 'none, it is a value'})"
                )
            node = getattr(node, part)
