"""Save and load a trained agent as one self-describing bundle directory.

A SAC ``model.zip`` alone cannot be used safely: its observations must be built with the
normalizer fitted on its training range, from the same features in the same order, in the
same observation layout (flat or a ``T``-bar window). A bundle keeps all of it together::

    <bundle>/
        model.zip                                 SB3 model (YoopSAC.save)
        encoder_state_dict.pt                     actor's (and critic's) features extractor
        normalizer_<SYMBOL>_<AGENT>.json          FeatureNormalizer (fit range only)
        config.yaml                               the ExperimentConfig (model_dump), which
                                                  the trainer and the main job read back
        metadata.json                             format version, observation spec, feature
                                                  names, data range + hash, provenance,
                                                  metrics, sha256 of every other file
        [extra files]                             e.g. the CLI's metrics.json

**Atomic writes.** :func:`save_bundle` writes every file into a temporary sibling
directory, fsyncs the files and the directory, and renames it into place. POSIX cannot
rename a directory onto a non-empty one (and Windows onto any), so an existing bundle is
first renamed aside, the new one renamed in, and the old one deleted only after that
succeeded; if the second rename fails the old bundle is renamed back. ``path`` therefore
only ever holds a complete old bundle or a complete new one; a crash between the two
renames leaves no bundle at ``path`` but the old one intact under
``.<name>.old-<random>`` next to it (:func:`load_bundle` points to it).

**Checked loads.** :func:`load_bundle` fails with a message naming the file or field when a
file is missing, changed after saving (sha256), or of another format version;
:meth:`ModelBundle.check_compatible` fails with *expected vs got* when the data's feature
names/order, the observation mode, the window length or the observation bounds differ,
instead of a shape error deep in torch (or, worse, silently permuted features).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch as th
import yaml
from gymnasium import spaces
from pydantic import ValidationError

from backend.data_download.feature_config import FeatureConfig
from backend.data_download.intraday_features import feature_names as config_feature_names
from backend.data_download.market_arrays import MarketArrays
from backend.data_download.normalizer import FeatureNormalizer, normalizer_filename
from backend.environments.env_config import EnvConfig
from backend.environments.intraday_env import IntradayTradingEnv
from backend.environments.rewards import RewardConfigBase, reward_config_union
from backend.models.feature_extractors import (
    EncoderConfigBase,
    encoder_config_union,
    uses_sequence_observation,
)
from backend.models.sac import YoopSAC
from backend.utils.config_model import ConfigModel, format_validation_error
from backend.utils.provenance import collect_provenance, sha256_file

__all__ = [
    "ACCOUNT_DIM",
    "BundleConfig",
    "BundleSections",
    "BUNDLE_FORMAT_VERSION",
    "CONFIG_FILE",
    "DEFAULT_AGENT",
    "ENCODER_FILE",
    "METADATA_FILE",
    "MODEL_FILE",
    "ModelBundle",
    "load_bundle",
    "load_encoder_state",
    "observation_spec",
    "save_bundle",
]

BUNDLE_FORMAT_VERSION = 1
"""Bumped whenever the bundle layout changes; :func:`load_bundle` refuses other versions."""

DEFAULT_AGENT = "SAC_INTRADAY_DSR"
"""Agent name used when the metadata names none (the normalizer file name includes it)."""

MODEL_FILE = "model.zip"
ENCODER_FILE = "encoder_state_dict.pt"
CONFIG_FILE = "config.yaml"
METADATA_FILE = "metadata.json"

ACCOUNT_DIM = 3
"""Width of the ``account`` observation (``Docs/CONTRACTS.md``)."""

_RESERVED_METADATA = (
    "format_version",
    "agent",
    "symbols",
    "feature_names",
    "observation",
    "encoder_mode",
    "normalizer_file",
    "files",
    "provenance",
)
"""Keys :func:`save_bundle` fills itself (``agent``/``symbols``/``provenance`` may be given)."""


class BundleConfig(Protocol):
    """What a bundle needs of the experiment it records.

    :class:`backend.config.experiment.ExperimentConfig` is one; the bundle module does not
    import it (the experiment schema sits above the models layer).
    """

    @property
    def env(self) -> EnvConfig:
        """The env of training, observation layout derived."""
        ...

    @property
    def features(self) -> FeatureConfig:
        """The features the normalizer was fitted on."""
        ...

    @property
    def encoder(self) -> EncoderConfigBase:
        """The encoder the model was built with."""
        ...

    @property
    def reward(self) -> RewardConfigBase:
        """The reward the model was trained on."""
        ...

    def to_yaml(self) -> str:
        """The whole experiment as YAML (``config.yaml``)."""
        ...


if TYPE_CHECKING:
    _EncoderSection = EncoderConfigBase
    _RewardSection = RewardConfigBase
else:
    _EncoderSection = encoder_config_union()
    _RewardSection = reward_config_union()


class BundleSections(ConfigModel):
    """The sections of a bundle's ``config.yaml`` that feeding the model depends on.

    Validated with the same section models as the experiment; the other sections
    (``training``, ``walk_forward``, ``data``, ...) are kept in :attr:`ModelBundle.config_data`
    and read by ``backend.config.experiment.load_experiment`` when the bundle is trained again.
    """

    model_config = {**ConfigModel.model_config, "extra": "ignore"}

    env: EnvConfig
    """The env config of training (observation layout, costs)."""
    features: FeatureConfig
    """Which features were computed, with which parameters."""
    encoder: _EncoderSection
    """The encoder the model was built with."""
    reward: _RewardSection
    """The reward the model was trained on."""


# ---------------------------------------------------------------------------------------
# The loaded bundle
# ---------------------------------------------------------------------------------------


def observation_spec(env_config: EnvConfig, n_features: int) -> dict[str, Any]:
    """The observation layout an env with ``env_config`` emits for ``n_features`` features.

    Returns:
        ``{"mode": "flat"|"sequence", "sequence_length": T or None, "n_features": F,
        "feature_clip": float, "account_dim": 3}``; ``sequence_length`` is None in flat
        mode, where the window length does not shape anything.
    """
    sequence = env_config.use_sequence_encoder
    return {
        "mode": "sequence" if sequence else "flat",
        "sequence_length": env_config.sequence_length if sequence else None,
        "n_features": int(n_features),
        "feature_clip": float(env_config.feature_clip),
        "account_dim": ACCOUNT_DIM,
    }


def _box(space: spaces.Dict, key: str) -> spaces.Box:
    sub = space.spaces[key]
    if not isinstance(sub, spaces.Box):
        raise ValueError(f"observation {key!r}: expected a Box, got {type(sub).__name__}")
    return sub


def _space_spec(space: spaces.Space[Any]) -> dict[str, Any]:
    """Read the :func:`observation_spec` fields off an observation space.

    Raises:
        ValueError: if the space is not one of the two Dict layouts of the contract.
    """
    if not isinstance(space, spaces.Dict):
        raise ValueError(
            f"observation mode: expected a Dict space with 'features' or 'window', got "
            f"{type(space).__name__}"
        )
    keys = set(space.spaces)
    seq: int | None = None
    if keys == {"window", "mask", "account"}:
        mode, main = "sequence", _box(space, "window")
        if len(main.shape) != 2:
            raise ValueError(f"observation 'window': expected shape (T, F), got {main.shape}")
        seq, n_features = main.shape
    elif keys == {"features", "account"}:
        mode, main = "flat", _box(space, "features")
        if len(main.shape) != 1:
            raise ValueError(f"observation 'features': expected shape (F,), got {main.shape}")
        (n_features,) = main.shape
    else:
        raise ValueError(
            "observation mode: expected keys {'features', 'account'} (flat) or "
            f"{{'window', 'mask', 'account'}} (sequence), got {sorted(keys)}"
        )
    return {
        "mode": mode,
        "sequence_length": None if seq is None else int(seq),
        "n_features": int(n_features),
        "feature_clip": float(np.max(main.high)),
        "account_dim": int(_box(space, "account").shape[0]),
    }


def _spec_differences(expected: Mapping[str, Any], got: Mapping[str, Any]) -> list[str]:
    """One ``"<field>: expected X, got Y"`` per differing observation-spec field."""
    labels = {
        "mode": "observation mode",
        "sequence_length": "sequence_length",
        "n_features": "n_features",
        "feature_clip": "feature_clip (observation bounds)",
        "account_dim": "account_dim",
    }
    out = []
    for key, label in labels.items():
        if key == "sequence_length" and not expected["mode"] == got["mode"] == "sequence":
            continue  # unused in flat mode; with differing modes the mode line says it all
        if expected.get(key) != got.get(key):
            out.append(f"{label}: expected {expected.get(key)!r}, got {got.get(key)!r}")
    return out


def feature_name_differences(expected: Sequence[str], got: Sequence[str]) -> list[str]:
    """Describe how two feature-name lists differ (membership first, then order)."""
    expected, got = list(expected), list(got)
    if expected == got:
        return []
    missing = [n for n in expected if n not in set(got)]
    extra = [n for n in got if n not in set(expected)]
    if missing or extra or len(expected) != len(got):
        return [
            f"feature names: expected {len(expected)} features, got {len(got)}; "
            f"missing {missing}, unexpected {extra}"
        ]
    first = next(i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b)
    return [
        f"feature order: first difference at position {first}: expected "
        f"{expected[first]!r}, got {got[first]!r} (expected order {expected})"
    ]


@dataclass
class ModelBundle:
    """A loaded bundle: the model and everything needed to feed it correctly."""

    model: YoopSAC
    """The trained model (on the device given to :func:`load_bundle`)."""
    normalizer: FeatureNormalizer
    """The normalizer fitted on the training range; transform raw features with it."""
    sections: BundleSections
    """The env, features, encoder and reward of ``config.yaml``, validated."""
    config_data: dict[str, Any] = field(default_factory=dict)
    """The whole ``config.yaml`` (an experiment: ``load_experiment`` reads it back)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The parsed ``metadata.json``."""
    path: Path | None = None
    """Where the bundle was loaded from (for error messages)."""

    @property
    def env_config(self) -> EnvConfig:
        """The env config of training (observation layout, costs)."""
        return self.sections.env

    @property
    def feature_config(self) -> FeatureConfig:
        """Which features were computed, with which parameters."""
        return self.sections.features

    @property
    def encoder_config(self) -> EncoderConfigBase:
        """The encoder the model was trained with."""
        return self.sections.encoder

    @property
    def reward_config(self) -> RewardConfigBase:
        """The reward the model was trained on."""
        return self.sections.reward

    @property
    def feature_names(self) -> list[str]:
        """Feature columns in the order the model reads them."""
        return list(self.normalizer.feature_names)

    @property
    def observation(self) -> dict[str, Any]:
        """The saved observation spec (:func:`observation_spec`)."""
        return dict(self.metadata["observation"])

    def check_compatible(
        self,
        observation_space: spaces.Space[Any] | None = None,
        *,
        feature_names: Sequence[str] | None = None,
        env_config: EnvConfig | None = None,
    ) -> None:
        """Raise unless the given env/data produce the observations the model was trained on.

        Give an env's ``observation_space``, or the data's ``feature_names`` and the
        ``env_config`` that will build the env (either or both). Every difference is
        collected into one message, so a user fixes them all at once.

        Raises:
            ValueError: naming each differing item with expected vs got: feature names
                or order, observation mode (flat/sequence), sequence_length, number of
                features, feature_clip (observation bounds).
            TypeError: if nothing to check is given.
        """
        if observation_space is None and feature_names is None and env_config is None:
            raise TypeError("check_compatible needs observation_space, feature_names or env_config")
        expected = self.observation
        problems: list[str] = []
        if feature_names is not None:
            problems += feature_name_differences(self.feature_names, feature_names)
        if env_config is not None:
            n = len(feature_names) if feature_names is not None else expected["n_features"]
            problems += _spec_differences(expected, observation_spec(env_config, n))
        if observation_space is not None:
            try:
                got = _space_spec(observation_space)
            except ValueError as exc:
                problems.append(str(exc))
            else:
                problems += _spec_differences(expected, got)
        problems = list(dict.fromkeys(problems))  # the same line from two sources once
        if problems:
            where = f"bundle {self.path}" if self.path is not None else "model bundle"
            raise ValueError(f"{where} does not match the env/data: " + "; ".join(problems))

    def make_env(
        self,
        arrays: MarketArrays,
        bar_range: tuple[int, int] | None = None,
        **env_overrides: Any,
    ) -> IntradayTradingEnv:
        """An env over ``arrays`` laid out exactly as the model expects.

        ``arrays`` must be normalized with :attr:`normalizer` (e.g.
        ``dataset.arrays(bundle.normalizer)``). ``env_overrides`` replace fields of the
        training env config, e.g. ``episode_sessions=0, random_start=False`` for a
        sequential evaluation; overriding anything that shapes the observation fails.

        Raises:
            ValueError: if the arrays' features or the resulting layout differ from the
                model's (see :meth:`check_compatible`).
        """
        config = self.env_config.replace(**env_overrides)
        self.check_compatible(feature_names=arrays.feature_names, env_config=config)
        env = IntradayTradingEnv(arrays, config, bar_range, reward=self.reward_config)
        self.check_compatible(env.observation_space)
        return env


# ---------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    """Persist a directory's entries (renames, new files); a no-op where unsupported."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _encoder_state(model: YoopSAC, encoder: EncoderConfigBase) -> dict[str, Any]:
    """The features extractors' weights (on CPU) with what is needed to rebuild them."""
    policy = model.policy
    shared = bool(policy.share_features_extractor)
    state: dict[str, Any] = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "encoder_mode": encoder.name,
        "encoder_config": encoder.to_dict(),
        "shared": shared,
        "actor": {
            k: v.detach().cpu() for k, v in policy.actor.features_extractor.state_dict().items()
        },
    }
    if not shared:
        critic = policy.critic.features_extractor.state_dict()
        state["critic"] = {k: v.detach().cpu() for k, v in critic.items()}
    return state


def load_encoder_state(path: str | Path) -> dict[str, Any]:
    """Read a bundle's ``encoder_state_dict.pt`` (or the file itself), weights only.

    Returns:
        ``{"encoder_mode", "encoder_config", "shared", "actor": state_dict[, "critic":
        state_dict]}``; load ``actor`` into a new encoder of the same config to warm-start.
    """
    source = Path(path)
    if source.is_dir():
        source = source / ENCODER_FILE
    if not source.is_file():
        raise FileNotFoundError(f"encoder state not found: {source}")
    # weights_only: the file holds tensors and plain types, never code to execute.
    return th.load(source, map_location="cpu", weights_only=True)


def _symbols_of(metadata: Mapping[str, Any]) -> list[str]:
    symbols = metadata.get("symbols", metadata.get("symbol"))
    if isinstance(symbols, str):
        symbols = [symbols]
    if (
        not isinstance(symbols, (list, tuple))
        or not symbols
        or not all(isinstance(s, str) and s.strip() for s in symbols)
    ):
        raise ValueError(
            f"metadata must name the symbol(s) as 'symbols': [..] or 'symbol': '..', got "
            f"{symbols!r}"
        )
    return [s.strip().upper() for s in symbols]


def _check_consistent(
    model: YoopSAC,
    normalizer: FeatureNormalizer,
    config: BundleConfig,
) -> dict[str, Any]:
    """Refuse to write a bundle whose parts disagree; return its observation spec."""
    env_config, feature_config = config.env, config.features
    encoder_mode = config.encoder.name
    if not normalizer.is_fitted:
        raise ValueError("normalizer is not fitted; a bundle needs the fitted normalizer")
    problems = feature_name_differences(
        config_feature_names(feature_config), normalizer.feature_names
    )
    problems = [f"feature_config vs normalizer: {p}" for p in problems]
    if uses_sequence_observation(encoder_mode) != env_config.use_sequence_encoder:
        problems.append(
            f"encoder_mode {encoder_mode!r} needs use_sequence_encoder="
            f"{not env_config.use_sequence_encoder}, env_config has "
            f"{env_config.use_sequence_encoder}"
        )
    spec = observation_spec(env_config, normalizer.n_features)
    try:
        problems += [
            f"model vs env_config: {p}"
            for p in _spec_differences(spec, _space_spec(model.observation_space))
        ]
    except ValueError as exc:
        problems.append(f"model: {exc}")
    if problems:
        raise ValueError("cannot save an inconsistent bundle: " + "; ".join(problems))
    return spec


def _prepare_target(target: Path) -> None:
    """Refuse to replace anything that is not a bundle (or an empty directory)."""
    if not target.exists():
        return
    if not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a bundle directory")
    if any(target.iterdir()) and not (target / METADATA_FILE).is_file():
        # Never delete a directory of unknown content just because a path was mistyped.
        raise FileExistsError(
            f"{target} exists, is not empty and holds no {METADATA_FILE}: refusing to replace "
            "something that is not a model bundle"
        )


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, replacing an existing bundle (see the module doc)."""
    parent = target.parent
    if not target.exists():
        os.replace(tmp, target)
        _fsync_dir(parent)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
    aside.rmdir()  # only the unique name is wanted; rename needs it free
    os.replace(target, aside)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(aside, target)
        raise
    _fsync_dir(parent)
    shutil.rmtree(aside, ignore_errors=True)


def save_bundle(
    path: str | Path,
    model: YoopSAC,
    normalizer: FeatureNormalizer,
    *,
    config: BundleConfig,
    metadata: Mapping[str, Any],
    extra_files: Mapping[str, str | bytes] | None = None,
) -> Path:
    """Write a model bundle to the directory ``path``, atomically.

    Args:
        path: The bundle directory. An existing bundle there is replaced; an existing
            non-empty directory that is not a bundle is refused.
        model: The trained model.
        normalizer: Its fitted normalizer.
        config: The experiment the model was trained with (``TrainResult.config``); its
            features must be those the normalizer was fitted on, its env the layout the
            model observes. Written as ``config.yaml`` (``model_dump(mode="json")``).
        metadata: Run information saved into ``metadata.json``. Must name
            ``symbols`` (or ``symbol``); may give ``agent`` (default
            :data:`DEFAULT_AGENT`) and ``provenance`` (default
            :func:`~backend.utils.provenance.collect_provenance`); conventionally also
            ``data`` (first/last bar, fit/val ranges, hash), ``seed``, ``metrics``,
            ``train_time_s``. Must be JSON-serializable (NaN/inf become null).
            ``format_version``, ``feature_names``, ``observation``, ``encoder_mode``,
            ``normalizer_file`` and ``files`` are filled here and may not be given. With
            several symbols the normalizer file is named for them joined by ``-``.
        extra_files: More files to put into the bundle, ``{file name: content}``.

    Returns:
        ``path``, as a ``Path``.

    Raises:
        ValueError: if the parts disagree (features vs normalizer, encoder vs observation
            layout, model vs env config), metadata is invalid or a name collides.
        FileExistsError: if ``path`` is something other than a bundle.
    """
    target = Path(path)
    symbols = _symbols_of(metadata)
    agent = str(metadata.get("agent", DEFAULT_AGENT))
    reserved = sorted(
        k
        for k in metadata
        if k in _RESERVED_METADATA and k not in ("agent", "symbols", "provenance")
    )
    if reserved:
        raise ValueError(f"metadata keys {reserved} are filled by save_bundle; do not pass them")
    spec = _check_consistent(model, normalizer, config)
    norm_file = normalizer_filename("-".join(symbols), agent)
    fixed = {MODEL_FILE, ENCODER_FILE, CONFIG_FILE, METADATA_FILE, norm_file}
    extras = dict(extra_files or {})
    for name in extras:
        if name in fixed or Path(name).name != name or name.startswith("."):
            raise ValueError(f"extra file name {name!r} is reserved or not a plain file name")

    _prepare_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save(tmp / MODEL_FILE)
        th.save(_encoder_state(model, config.encoder), tmp / ENCODER_FILE)
        normalizer.save(tmp / norm_file)
        _write_text(tmp / CONFIG_FILE, config.to_yaml())
        for name, content in extras.items():
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                _write_text(tmp / name, content)
        written = sorted(p.name for p in tmp.iterdir())
        document = {
            "format_version": BUNDLE_FORMAT_VERSION,
            "agent": agent,
            "symbols": symbols,
            "encoder_mode": config.encoder.name,
            "feature_names": list(normalizer.feature_names),
            "observation": spec,
            "normalizer_file": norm_file,
            **{k: v for k, v in metadata.items() if k not in ("agent", "symbols", "symbol")},
            "provenance": metadata.get("provenance") or collect_provenance(),
            "files": {name: sha256_file(tmp / name) for name in written},
        }
        text = json.dumps(_finite(document), indent=2, allow_nan=False, default=_json_default)
        text += "\n"
        _write_text(tmp / METADATA_FILE, text)
        for name in (*written, METADATA_FILE):
            _fsync_file(tmp / name)
        _fsync_dir(tmp)
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _finite(value: Any) -> Any:
    """``value`` with NaN/inf floats (e.g. a Sharpe of no evaluation) as None: JSON has none."""
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    """JSON for the numpy scalars/arrays and timestamps that metrics tend to contain."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON-serializable")


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


def _missing_bundle_message(root: Path) -> str:
    message = f"no model bundle at {root}"
    if root.parent.is_dir():
        aside = sorted(root.parent.glob(f".{root.name}.old-*"))
        if aside:
            message += (
                f"; a save was interrupted while replacing it: the previous bundle is at "
                f"{aside[-1]} (rename it back to restore it)"
            )
    return message


def load_bundle(path: str | Path, *, device: str = "cpu") -> ModelBundle:
    """Load and verify a bundle written by :func:`save_bundle`.

    Args:
        path: The bundle directory.
        device: Torch device for the model (``cpu``, ``cuda``, ``auto``).

    Returns:
        The model, normalizer, configs and metadata.

    Raises:
        FileNotFoundError: if the directory or one of its files is missing (named).
        ValueError: on another format version, a file whose sha256 differs from the one
            recorded at save time, or parts that disagree with each other.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(_missing_bundle_message(root))
    meta_path = root / METADATA_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"bundle {root} is missing {METADATA_FILE}")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path} is not valid JSON: {exc}") from exc
    version = metadata.get("format_version") if isinstance(metadata, dict) else None
    if version != BUNDLE_FORMAT_VERSION:
        raise ValueError(
            f"bundle {root}: format_version is {version!r}, this code reads version "
            f"{BUNDLE_FORMAT_VERSION}; re-save it with a matching release"
        )
    lacking = [
        k for k in ("observation", "normalizer_file", "files", "feature_names") if k not in metadata
    ]
    if lacking:
        raise ValueError(f"bundle {root}: {METADATA_FILE} lacks field(s) {lacking}")
    norm_file = str(metadata["normalizer_file"])
    required = [MODEL_FILE, ENCODER_FILE, CONFIG_FILE, norm_file]
    missing = [name for name in required if not (root / name).is_file()]
    missing += [n for n in metadata["files"] if n not in required and not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"bundle {root} is missing file(s) {missing}")
    for name, digest in metadata["files"].items():
        actual = sha256_file(root / name)
        if actual != digest:
            raise ValueError(
                f"bundle {root}: {name} changed after saving: sha256 expected {digest}, "
                f"got {actual}"
            )

    try:
        config_data = yaml.safe_load((root / CONFIG_FILE).read_text(encoding="utf-8"))
        sections = BundleSections.model_validate(config_data)
    except (yaml.YAMLError, ValidationError) as exc:
        detail = (
            format_validation_error(exc, model=BundleSections)
            if isinstance(exc, ValidationError)
            else " ".join(str(exc).split())
        )
        raise ValueError(f"bundle {root}: {CONFIG_FILE} is malformed: {detail}") from None
    feature_config = sections.features
    normalizer = FeatureNormalizer.load(root / norm_file)
    model = YoopSAC.load(root / MODEL_FILE, device=device)
    bundle = ModelBundle(
        model=model,
        normalizer=normalizer,
        sections=sections,
        config_data=dict(config_data),
        metadata=metadata,
        path=root,
    )
    # The parts must agree with each other as they did at save time.
    drift = feature_name_differences(config_feature_names(feature_config), normalizer.feature_names)
    if drift:
        raise ValueError(f"bundle {root}: {CONFIG_FILE} features vs {norm_file}: {drift[0]}")
    bundle.check_compatible(
        model.observation_space,
        feature_names=metadata["feature_names"],
        env_config=sections.env,
    )
    return bundle
