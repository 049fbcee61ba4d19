"""The base of every typed config: a frozen pydantic model that forbids unknown keys.

Every section of the experiment schema (:mod:`backend.config.experiment`) and every
standalone config (features, env, rewards, encoders) derives from :class:`ConfigModel`:

* ``extra="forbid"``: a misspelt key is an error, never a silently ignored default;
* ``frozen=True``: configs are hashable values (the feature cache keys on them);
* ``use_attribute_docstrings=True``: the docstring under each field becomes its JSON-Schema
  ``description``, so the schema exported by ``python -m backend.config --schema`` (and the
  web form built from it) documents itself.

Scalars are strict (``Strict*`` aliases below): ``"14"`` is not an int and ``true`` is not
1, as in the hand-written checks this replaces; ints are accepted for floats, and YAML lists
for tuples. :func:`format_validation_error` turns pydantic's error list into one line per
problem that names the key's path (``encoder.local_window[1]: ...``).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError
from typing_extensions import Self

from backend.utils.atomic_io import write_text_atomic

__all__ = [
    "ConfigError",
    "ConfigModel",
    "NonNegFloat",
    "NonNegInt",
    "PosFloat",
    "PosInt",
    "Probability",
    "StrictBool",
    "StrictFloat",
    "StrictInt",
    "StrictStr",
    "format_validation_error",
    "load_mapping",
]

StrictInt = Annotated[int, Strict()]
StrictBool = Annotated[bool, Strict()]
StrictStr = Annotated[str, Strict()]
StrictFloat = Annotated[float, Strict(), Field(allow_inf_nan=False)]
"""A finite number; ints are accepted (strict floats take ints, never bools or strings)."""
PosInt = Annotated[int, Strict(), Field(ge=1)]
NonNegInt = Annotated[int, Strict(), Field(ge=0)]
PosFloat = Annotated[float, Strict(), Field(gt=0.0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Strict(), Field(ge=0.0, allow_inf_nan=False)]
Probability = Annotated[float, Strict(), Field(ge=0.0, lt=1.0)]
"""A dropout-like rate in ``[0, 1)``."""

_YAML_SUFFIXES = (".yaml", ".yml")
_JSON_SUFFIXES = (".json",)


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line per problem, paths named."""


class ConfigModel(BaseModel):
    """Frozen, strict, documented config model (see the module docstring)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        validate_default=False,
    )

    def __init__(self, /, **data: Any) -> None:
        """Validate ``data``; errors become one :class:`ConfigError` line per problem."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            cls = type(self)
            raise ConfigError(format_validation_error(exc, root=cls.__name__, model=cls)) from None

    # Nested validation must not go through this __init__ (its errors would lose their
    # location); pydantic skips an __init__ marked as its own base one.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied and validated again (unlike ``model_copy``)."""
        return self.model_validate({**dict(self), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict (tuples as lists): ``model_dump(mode="json")``."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from a plain mapping; unknown keys and wrong types raise, naming the key.

        Raises:
            ConfigError: one line per problem, ``<Class>.<path>: <message>``.
        """
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, root=cls.__name__, model=cls)) from None

    def save(self, path: str | Path) -> Path:
        """Write as YAML (``.yaml``/``.yml``) or JSON (``.json``), atomically."""
        target = Path(path)
        data = self.to_dict()
        if _format_of(target) == "yaml":
            text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
        else:
            text = json.dumps(data, indent=2) + "\n"
        return write_text_atomic(target, text)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a file written by :meth:`save` (or by hand); YAML is safe-loaded."""
        return cls.from_dict(load_mapping(path))


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _YAML_SUFFIXES:
        return "yaml"
    if suffix in _JSON_SUFFIXES:
        return "json"
    raise ConfigError(
        f"cannot tell the format of {str(path)!r} from its extension; "
        f"use one of {list(_YAML_SUFFIXES + _JSON_SUFFIXES)}"
    )


def load_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML or JSON file (empty file: ``{}``).

    YAML is read with ``safe_load``: a config file can never construct Python objects.

    Raises:
        ConfigError: unknown extension, unparsable text, or a top level that is no mapping.
        OSError: the file cannot be read.
    """
    source = Path(path)
    fmt = _format_of(source)
    text = source.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) if fmt == "yaml" else json.loads(text)
    except (yaml.YAMLError, ValueError) as exc:
        one_line = " ".join(str(exc).split())
        raise ConfigError(f"{source}: cannot parse: {one_line}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        raise ConfigError(f"{source}: expected a mapping at the top level, got {kind}")
    return dict(data)


# ---------------------------------------------------------------------------------------
# One-line error messages
# ---------------------------------------------------------------------------------------


def _unwrap(annotation: Any) -> list[type[BaseModel]]:
    """The model classes an annotation may hold (through Annotated, unions, Optional)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        out.extend(_unwrap(arg))
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and not out:
        out.extend(_unwrap(origin))
    return out


def _walk(model: type[BaseModel] | None, loc: Sequence[str | int]) -> tuple[str, Any]:
    """Render ``loc`` as ``a.b[1].c``, dropping union tags; also return the last model.

    Pydantic puts the tag of a discriminated union into the location
    (``('encoder', 'transformer', 'local_window', 1)``); the user never wrote it, so it is
    left out of the path.
    """
    path = ""
    current: list[type[BaseModel]] = [model] if model is not None else []
    last_model: type[BaseModel] | None = model
    pending_union = False
    for item in loc:
        if isinstance(item, int):
            path += f"[{item}]"
            continue
        if pending_union and any(
            getattr(m.model_fields.get("name"), "default", None) == item for m in current
        ):
            current = [
                m for m in current if getattr(m.model_fields.get("name"), "default", None) == item
            ]
            last_model = current[0]
            pending_union = False
            continue
        if item.startswith(("function-", "tagged-union", "union[", "json-or-python")):
            continue
        path += f".{item}" if path else item
        nxt: list[type[BaseModel]] = []
        for m in current:
            field = m.model_fields.get(item)
            if field is not None:
                nxt.extend(_unwrap(field.annotation))
        pending_union = len(nxt) > 1
        if nxt:
            last_model = nxt[0] if len(nxt) == 1 else None
        current = nxt
    return path, last_model


def _parent_model(model: type[BaseModel] | None, loc: Sequence[str | int]) -> Any:
    """The model class that holds the last key of ``loc`` (for 'valid keys' hints)."""
    _, parent = _walk(model, loc[:-1])
    return parent


def format_validation_error(
    exc: ValidationError, *, root: str = "", model: type[BaseModel] | None = None
) -> str:
    """One line per error: ``<root>.<path>: <message>``, joined with ``"; "``.

    Args:
        exc: The pydantic error.
        root: Prefix of every path (e.g. the class or file name); empty for none.
        model: The model that was validated; defaults to ``exc.title``'s class when known.
            Used to list valid keys for an unknown one and to drop union tags.
    """
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path, _ = _walk(model, loc)
        if model is None:
            path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc)
            path = path.replace(".[", "[")
        message = str(err["msg"])
        kind = err["type"]
        if message.startswith(("Value error, ", "Assertion failed, ")):
            message = message.split(", ", 1)[1]
        if kind == "extra_forbidden":
            parent = _parent_model(model, loc) if model is not None else None
            message = "unknown key"
            if parent is not None:
                valid = sorted(parent.model_fields)
                close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                message += f"{hint}; valid keys: {valid}"
        elif kind not in ("value_error", "assertion_error") and "input" in err:
            got = err["input"]
            if not isinstance(got, Mapping):
                message += f", got {type(got).__name__} {got!r}"
        where = ".".join(p for p in (root, path) if p)
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)
