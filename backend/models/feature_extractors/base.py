"""Shared plumbing for the SAC observation encoders.

Every encoder is an SB3 ``BaseFeaturesExtractor`` that takes the env's ``spaces.Dict``
observation (see ``Docs/CONTRACTS.md``, "Observation"), encodes the market part with a
mode-specific *body*, and returns::

    features = concat(head(body(market)), account_proj(account))  # (B, E + A)

* ``body``: the only part that differs between modes. Flat encoders see ``features``
  ``(B, F)``; sequence encoders see ``window`` ``(B, T, F)`` and a boolean ``valid`` mask
  ``(B, T)`` (padding only at the oldest end; the newest bar, last, is always real).
* ``head``: ``Linear -> LayerNorm -> Tanh`` to ``embedding_dim``, sized by a
  ``torch.no_grad()`` dry pass through the body. The bounded, normalised output is the
  SAC-AE/DrQ encoder head (Yarats et al. 2021), which keeps the critic's inputs on one scale
  whatever the body.
* ``account_proj``: ``Linear(3, account_dim) -> Tanh``.
* optional instrument embedding (``instruments`` non-empty): a learned vector per symbol,
  appended to every bar's features before the body, so one pooled model can tell its
  symbols apart. Every body starts with a per-bar linear projection, so appending ``e`` to
  the features is adding a learned per-instrument token offset (``W [x; e] = W_x x +
  W_e e``): the design documents' "Position + Instrument" context embedding.

So ``features_dim = embedding_dim + account_dim`` for every mode, and switching
``encoder.name`` changes nothing else in the SAC setup.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

import torch as th
from gymnasium import spaces
from pydantic import model_validator
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from backend.utils.config_model import ConfigModel, PosInt

Activation = Literal["relu", "gelu", "tanh", "silu"]
"""Activation names shared by every encoder config."""

EncoderSize = Literal["tiny", "small", "base", "large"]
"""Size presets every encoder config carries (``base`` = the field defaults)."""

ENCODER_SIZES: tuple[str, ...] = get_args(EncoderSize)

SizePresets = Mapping[str, Mapping[str, Any]]
"""``{size: {field: value}}``: the field values a size stands for."""


class EncoderConfigBase(ConfigModel):
    """Fields every encoder shares: its name, size preset and output widths.

    ``size`` picks one of the config's :attr:`size_presets` as the base of every field it
    lists; fields given explicitly override it (``{name: transformer, size: tiny,
    n_layers: 2}``). ``base`` is the field defaults.
    """

    size_presets: ClassVar[SizePresets] = {}
    """Per-size field values; subclasses define all of :data:`ENCODER_SIZES`."""

    name: str
    """Registry key of the encoder (the discriminator of the ``encoder`` section)."""

    size: EncoderSize = "base"
    """Size preset the unset fields come from: ``tiny`` (the ``short`` run preset: width
    16, minutes on a CPU), ``small``, ``base`` (the field defaults) or ``large``."""

    embedding_dim: PosInt = 64
    """Size of the encoder's embedding of the features or window, before the account
    projection is appended."""

    account_dim: PosInt = 16
    """Width of the learned projection of the account vector (position, unrealized PnL,
    session fraction left). Projected rather than passed raw because PnL fractions are
    orders of magnitude smaller than the bounded embedding."""

    instruments: tuple[str, ...] = ()
    """Symbols of the instrument embedding table, in id order (id ``i`` is
    ``instruments[i]``). Empty (default): no instrument embedding. With symbols, the
    encoder reads the id of each observation from its ``instrument`` entry (the supervised
    lab's pooled models), or uses ``instrument`` when the observation has none (an RL agent
    trading one symbol with a pooled trunk)."""

    instrument_dim: PosInt = 4
    """Width of the learned instrument embedding (used only with ``instruments``)."""

    instrument: str | None = None
    """The fixed symbol for observations that carry no ``instrument`` entry; must be one of
    ``instruments``. None: such observations are refused."""

    @model_validator(mode="after")
    def _check_instruments(self) -> EncoderConfigBase:
        if len(set(self.instruments)) != len(self.instruments):
            raise ValueError(f"instruments: symbols must not repeat, got {list(self.instruments)}")
        if self.instrument is not None and self.instrument not in self.instruments:
            raise ValueError(
                f"instrument: {self.instrument!r} is not one of instruments "
                f"{list(self.instruments)}"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _apply_size(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        size = data.get("size", "base")
        if size not in cls.size_presets:
            return data  # the field's own Literal check reports it
        return {**cls.size_presets[size], **data}

    @property
    def features_dim(self) -> int:
        """Number of features the encoder outputs: ``embedding_dim + account_dim``."""
        return self.embedding_dim + self.account_dim


ObservationKind = Literal["flat", "sequence"]
"""Which observation layout an encoder reads (the env's ``use_sequence_encoder`` flag)."""

FLAT_KEYS: frozenset[str] = frozenset({"features", "account"})
SEQUENCE_KEYS: frozenset[str] = frozenset({"window", "mask", "account"})
INSTRUMENT_KEY = "instrument"
"""Optional observation entry: the instrument id ``(1,)`` (float, as every Box), an index
into the encoder config's ``instruments``."""

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}
"""Activation name (as in the configs) to module class."""


@dataclass(frozen=True)
class ObservationDims:
    """Sizes read from a validated observation space."""

    kind: ObservationKind
    """Layout of the space."""

    n_features: int
    """F: engineered features per bar."""

    window: int
    """T: bars per window (1 for flat observations)."""

    n_account: int
    """Length of the account vector (3 under the current contract)."""


def _box_shape(space: spaces.Dict, key: str, owner: str) -> tuple[int, ...]:
    sub = space.spaces[key]
    if not isinstance(sub, spaces.Box):
        raise TypeError(f"{owner}: observation[{key!r}] must be a gymnasium Box, got {sub}")
    return tuple(int(n) for n in sub.shape)


def check_observation_space(
    observation_space: object, kind: ObservationKind, owner: str
) -> ObservationDims:
    """Validate the env's Dict space against the layout an encoder needs.

    Args:
        observation_space: The space SB3 hands the extractor.
        kind: ``"flat"`` (``features``, ``account``) or ``"sequence"`` (``window``,
            ``mask``, ``account``).
        owner: Encoder class name, for error messages.

    Returns:
        The feature, window and account sizes.

    Raises:
        TypeError: if the space is not a ``spaces.Dict`` of ``Box`` spaces, or has the
            other mode's layout (the message says which env flag or encoder to change).
        ValueError: if the shapes are inconsistent.
    """
    if not isinstance(observation_space, spaces.Dict):
        raise TypeError(
            f"{owner} needs a gymnasium spaces.Dict observation space (use SAC's "
            f"'MultiInputPolicy'), got {observation_space}"
        )
    keys = set(observation_space.spaces)
    if kind == "flat":
        if "window" in keys:
            raise TypeError(
                f"{owner} needs flat observations {sorted(FLAT_KEYS)} but got a sequence-mode "
                f"space {sorted(keys)}: set use_sequence_encoder=False in the env, or pick a "
                "sequence encoder (encoder name 'cnn', 'lstm' or 'transformer')"
            )
        if not FLAT_KEYS <= keys:
            raise TypeError(f"{owner} needs keys {sorted(FLAT_KEYS)}, got {sorted(keys)}")
        features = _box_shape(observation_space, "features", owner)
        if len(features) != 1:
            raise ValueError(f"{owner}: 'features' must have shape (F,), got {features}")
        n_features, window = features[0], 1
    else:
        if "features" in keys and "window" not in keys:
            raise TypeError(
                f"{owner} needs sequence observations {sorted(SEQUENCE_KEYS)} but got a "
                f"flat-mode space {sorted(keys)}: set use_sequence_encoder=True in the env, "
                "or use the flat encoder name 'manual'"
            )
        if not SEQUENCE_KEYS <= keys:
            raise TypeError(f"{owner} needs keys {sorted(SEQUENCE_KEYS)}, got {sorted(keys)}")
        window_shape = _box_shape(observation_space, "window", owner)
        mask_shape = _box_shape(observation_space, "mask", owner)
        if len(window_shape) != 2:
            raise ValueError(f"{owner}: 'window' must have shape (T, F), got {window_shape}")
        window, n_features = window_shape
        if mask_shape != (window,):
            raise ValueError(
                f"{owner}: 'mask' must have shape (T,) = ({window},), got {mask_shape}"
            )
    account = _box_shape(observation_space, "account", owner)
    if len(account) != 1:
        raise ValueError(f"{owner}: 'account' must have shape (A,), got {account}")
    if min(n_features, window, account[0]) < 1:
        raise ValueError(f"{owner}: empty observation dimension in {observation_space}")
    return ObservationDims(kind=kind, n_features=n_features, window=window, n_account=account[0])


def valid_mask(mask: th.Tensor) -> th.Tensor:
    """Env float mask ``(B, T)`` (1.0 real, 0.0 padding) to a boolean mask ``(B, T)``.

    Thresholded rather than compared to 1.0 so that a mask that went through a float
    pipeline (replay buffer, VecNormalize excluded keys) still reads correctly.
    """
    return mask > 0.5


def masked_mean(x: th.Tensor, valid: th.Tensor) -> th.Tensor:
    """Mean of ``x`` ``(B, T, D)`` over the valid steps of ``valid`` ``(B, T)`` -> ``(B, D)``.

    A row with no valid step (which the contract rules out) yields zeros, not NaN.
    """
    weights = valid.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
    count = weights.sum(dim=1).clamp_min(1.0)  # (B, 1)
    return (x * weights).sum(dim=1) / count  # (B, D)


class EncoderBase(BaseFeaturesExtractor, abc.ABC):
    """Dict observation -> ``concat(embedding, account projection)``.

    Subclasses set ``observation_kind`` and ``config_class`` and build the body in
    ``_build_body``; this class validates the space, sizes the head with a dry pass and
    implements ``forward``.

    Attributes:
        config: The encoder's validated config.
        dims: Sizes read from the observation space.
        body: Mode-specific network, ``(B, F)`` or ``((B, T, F), (B, T) bool)`` -> ``(B, D)``.
        head: ``Linear(D, embedding_dim) -> LayerNorm -> Tanh``.
        account_proj: ``Linear(n_account, account_dim) -> Tanh``.
    """

    observation_kind: ClassVar[ObservationKind]
    config_class: ClassVar[type[EncoderConfigBase]]
    """Set by :func:`~backend.models.feature_extractors.registry.register_encoder`."""

    def __init__(
        self, observation_space: spaces.Dict, config: EncoderConfigBase | None = None
    ) -> None:
        name = type(self).__name__
        if config is None:
            config = self.config_class.model_validate({})
        elif not isinstance(config, self.config_class):
            raise TypeError(
                f"{name} takes a {self.config_class.__name__}, got {type(config).__name__}"
            )
        dims = check_observation_space(observation_space, self.observation_kind, name)
        super().__init__(observation_space, features_dim=config.features_dim)
        self.config = config
        self.dims = dims
        self.instrument_embedding: nn.Embedding | None = None
        self.fixed_instrument: int | None = None
        body_dims = dims
        if config.instruments:
            has_ids = INSTRUMENT_KEY in observation_space.spaces
            if not has_ids and config.instrument is None:
                raise ValueError(
                    f"{name}: instruments {list(config.instruments)} need an "
                    f"{INSTRUMENT_KEY!r} entry in the observation or a fixed 'instrument' "
                    "in the encoder config"
                )
            if config.instrument is not None:
                self.fixed_instrument = config.instruments.index(config.instrument)
            self.instrument_embedding = nn.Embedding(len(config.instruments), config.instrument_dim)
            body_dims = dataclasses.replace(
                dims, n_features=dims.n_features + config.instrument_dim
            )
        self.body = self._build_body(body_dims, config)
        with th.no_grad():
            body_dim = self._encode(self._dry_run_observation()).shape[-1]
        self.head = nn.Sequential(
            nn.Linear(body_dim, config.embedding_dim),
            nn.LayerNorm(config.embedding_dim),
            nn.Tanh(),
        )
        self.account_proj = nn.Sequential(
            nn.Linear(dims.n_account, config.account_dim),
            nn.Tanh(),
        )

    @abc.abstractmethod
    def _build_body(self, dims: ObservationDims, config: EncoderConfigBase) -> nn.Module:
        """Return the mode-specific network; its output size is found by a dry pass."""

    def _dry_run_observation(self) -> dict[str, th.Tensor]:
        """A batch of one all-zero observation with every bar real."""
        n_acc = self.dims.n_account
        ids = {INSTRUMENT_KEY: th.zeros(1, 1)} if self.instrument_embedding is not None else {}
        if self.observation_kind == "flat":
            return {
                "features": th.zeros(1, self.dims.n_features),
                "account": th.zeros(1, n_acc),
                **ids,
            }
        return {
            "window": th.zeros(1, self.dims.window, self.dims.n_features),
            "mask": th.ones(1, self.dims.window),
            "account": th.zeros(1, n_acc),
            **ids,
        }

    def _instrument_vectors(self, observations: dict[str, th.Tensor], batch: int) -> th.Tensor:
        """Embedding of each observation's instrument -> ``(B, instrument_dim)``."""
        assert self.instrument_embedding is not None
        weight = self.instrument_embedding.weight
        if INSTRUMENT_KEY in observations:
            ids = observations[INSTRUMENT_KEY].reshape(batch, -1)[:, 0].round().long()
        else:
            assert self.fixed_instrument is not None  # checked in __init__
            ids = th.full((batch,), self.fixed_instrument, dtype=th.long, device=weight.device)
        n = weight.shape[0]
        if bool(((ids < 0) | (ids >= n)).any()):
            raise ValueError(
                f"{type(self).__name__}: instrument ids must lie in [0, {n - 1}] "
                f"({list(self.config.instruments)}), got {ids.unique().tolist()}"
            )
        return self.instrument_embedding(ids)  # (B, K)

    def _encode(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        """Run the body on the market part of the observation -> ``(B, D)``."""
        if self.observation_kind == "flat":
            features = observations["features"]  # (B, F)
            if self.instrument_embedding is not None:
                extra = self._instrument_vectors(observations, features.shape[0])
                features = th.cat([features, extra.to(features.dtype)], dim=-1)  # (B, F + K)
            return self.body(features)  # (B, D)
        window = observations["window"]  # (B, T, F)
        valid = valid_mask(observations["mask"])  # (B, T)
        if self.instrument_embedding is not None:
            extra = self._instrument_vectors(observations, window.shape[0])  # (B, K)
            extra = extra.to(window.dtype).unsqueeze(1).expand(-1, window.shape[1], -1)
            window = th.cat([window, extra], dim=-1)  # (B, T, F + K)
        return self.body(window, valid)  # (B, D)

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        """Encode a batch of Dict observations -> ``(B, features_dim)``."""
        embedding = self.head(self._encode(observations))  # (B, E)
        account = self.account_proj(observations["account"])  # (B, A)
        return th.cat([embedding, account], dim=-1)  # (B, E + A)


class FlatEncoderBase(EncoderBase):
    """Base for encoders of flat-mode observations ``{"features": (F,), "account": (3,)}``."""

    observation_kind: ClassVar[ObservationKind] = "flat"


class SequenceEncoderBase(EncoderBase):
    """Base for encoders of sequence-mode observations ``{"window", "mask", "account"}``."""

    observation_kind: ClassVar[ObservationKind] = "sequence"
