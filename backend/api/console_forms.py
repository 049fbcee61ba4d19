"""HTML forms from a pydantic model's JSON Schema, and form values back to model input.

The console's Configure page is generated, never hand-written, so it cannot drift from the
experiment schema: :func:`build_form` walks ``model_json_schema()`` (``$ref``/``$defs``,
nullable ``anyOf``, enums, scalar lists, nested models) into a tree of :class:`Group`,
:class:`Union` and :class:`Field`. A discriminated union (the encoder, the reward) becomes a
:class:`Union`: a select of its variants (the encoder-mode toggle) and one option group per
variant, of which the page shows only the selected one.

Every input is named by a *form path*: ``training.total_timesteps`` for a field of a nested
model, ``encoder[cnn].channels`` for a field of the ``cnn`` variant of the ``encoder``
union, ``encoder::variant`` for the union's select. :func:`form_to_data` turns the flat
``{path: text}`` the page posts into the nested input of ``model_validate`` (numbers parsed,
lists split on commas, only the selected variant kept; text that does not parse is passed
through unchanged so that pydantic reports it), and :func:`error_paths` maps pydantic error
locations back to form paths so each message is shown beside its field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

VARIANT_SUFFIX = "::variant"
"""Form path suffix of a union's variant select."""

SCALAR_KINDS = ("integer", "number", "string", "boolean")


@dataclass
class Field:
    """One input: a scalar, an enum, a constant or a list of scalars."""

    path: str
    name: str
    title: str
    kind: str
    """``integer``, ``number``, ``string``, ``boolean``, ``enum``, ``list``, ``const`` or
    ``yaml`` (a mapping edited in the YAML file only, never posted)."""
    description: str = ""
    default: Any = None
    has_default: bool = False
    nullable: bool = False
    options: list[Any] = field(default_factory=list)
    """Choices of an ``enum``."""
    item_kind: str = "string"
    """Kind of a ``list``'s items."""
    minimum: float | None = None
    maximum: float | None = None
    constraints: str = ""
    """``>= 1, < 100``: the schema's bounds, for the configuration reference."""

    @property
    def node(self) -> str:
        """Template switch."""
        return "field"

    def display_default(self) -> str:
        """The default as the input's initial text."""
        if not self.has_default or self.default is None:
            return ""
        if self.kind == "list":
            return ", ".join(str(v) for v in self.default)
        if self.kind == "boolean":
            return "true" if self.default else "false"
        return str(self.default)


@dataclass
class Group:
    """A nested model: a fieldset of its properties."""

    path: str
    name: str
    title: str
    description: str = ""
    children: list[Field | Group | Union] = field(default_factory=list)

    @property
    def node(self) -> str:
        """Template switch."""
        return "group"


@dataclass
class Union:
    """A discriminated union: a variant select and one option group per variant."""

    path: str
    name: str
    title: str
    discriminator: str
    description: str = ""
    variants: dict[str, Group] = field(default_factory=dict)
    default_variant: str | None = None

    @property
    def node(self) -> str:
        """Template switch."""
        return "union"

    @property
    def select_path(self) -> str:
        """Form path of the variant select."""
        return self.path + VARIANT_SUFFIX


class SchemaError(ValueError):
    """The JSON Schema uses a construct the form generator does not handle."""


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class _Walker:
    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.defs: Mapping[str, Any] = schema.get("$defs", {})

    def resolve(self, node: Mapping[str, Any]) -> dict[str, Any]:
        """Follow ``$ref`` (and single-element ``allOf``), keeping sibling keys."""
        node = dict(node)
        while True:
            if "$ref" in node:
                name = str(node.pop("$ref")).rsplit("/", 1)[-1]
                node = {**self.defs[name], **node}
            elif "allOf" in node and len(node["allOf"]) == 1:
                inner = node.pop("allOf")[0]
                node = {**self.resolve(inner), **node}
            else:
                return node

    def group(self, node: Mapping[str, Any], path: str, name: str, title: str) -> Group:
        node = self.resolve(node)
        group = Group(path, name, title, str(node.get("description", "")).strip())
        required = set(node.get("required", []))
        for prop, sub in node.get("properties", {}).items():
            if self.resolve(sub).get("readOnly"):
                continue  # derived by the schema (JSON Schema readOnly): never submitted
            group.children.append(self.node(sub, _join(path, prop), prop, prop in required))
        return group

    def node(
        self, raw: Mapping[str, Any], path: str, name: str, required: bool
    ) -> Field | Group | Union:
        node = self.resolve(raw)
        title = str(node.get("title") or name.replace("_", " "))
        description = str(node.get("description", "")).strip()
        nullable = False
        alternatives = node.get("oneOf") or node.get("anyOf")
        if alternatives is not None and "discriminator" in node:
            return self.union(node, path, name, title, description)
        if alternatives is not None:
            non_null = [a for a in alternatives if a.get("type") != "null"]
            nullable = len(non_null) < len(alternatives)
            if len(non_null) != 1:
                resolved = [self.resolve(a) for a in non_null]
                if all(r.get("type") in SCALAR_KINDS for r in resolved):
                    # int | float and the like: a free text field, pydantic decides.
                    inner: dict[str, Any] = {"type": "string"}
                else:
                    raise SchemaError(f"{path}: a non-discriminated union of models")
            else:
                inner = self.resolve(non_null[0])
            merged = {**inner, **{k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}}
            node = merged
        if node.get("type") == "object" and "properties" in node:
            # Legend: the field's own name (``training``), not the model's class name.
            group = self.group(node, path, name, name)
            group.description = description or group.description
            return group
        f = Field(
            path=path,
            name=name,
            title=title,
            kind="string",
            description=description,
            default=node.get("default"),
            has_default="default" in node,
            nullable=nullable,
            minimum=node.get("minimum", node.get("exclusiveMinimum")),
            maximum=node.get("maximum", node.get("exclusiveMaximum")),
        )
        bounds = [
            f"{op} {node[key]}"
            for key, op in (
                ("minimum", ">="),
                ("exclusiveMinimum", ">"),
                ("maximum", "<="),
                ("exclusiveMaximum", "<"),
                ("minLength", "length >="),
                ("maxLength", "length <="),
                ("minItems", "items >="),
                ("maxItems", "items <="),
            )
            if key in node
        ]
        f.constraints = ", ".join(bounds)
        if "const" in node:
            f.kind, f.default, f.has_default = "const", node["const"], True
        elif "enum" in node:
            f.kind, f.options = "enum", list(node["enum"])
        elif node.get("type") == "array":
            items = self.resolve(node.get("items", {}))
            f.kind = "list"
            f.item_kind = str(items.get("type", "string"))
            if f.item_kind not in SCALAR_KINDS:
                raise SchemaError(f"{path}: lists of {f.item_kind} are not supported")
        elif node.get("type") in SCALAR_KINDS:
            f.kind = str(node["type"])
        elif node.get("type") == "object" and node.get("x-yaml-only"):
            # A mapping the schema marks as edited in YAML only (search.space): documented,
            # never a form input; the posted config leaves it at its default.
            f.kind = "yaml"
        elif node.get("type") == "object":
            raise SchemaError(f"{path}: free-form mappings are not supported")
        if not required and not f.has_default and not nullable:
            f.nullable = True
        return f

    def union(
        self, node: Mapping[str, Any], path: str, name: str, title: str, description: str
    ) -> Union:
        disc = node["discriminator"]
        prop = str(disc["propertyName"] if isinstance(disc, Mapping) else disc)
        union = Union(path, name, title, prop, description)
        mapping = disc.get("mapping", {}) if isinstance(disc, Mapping) else {}
        refs = {str(ref).rsplit("/", 1)[-1]: tag for tag, ref in mapping.items()}
        for alt in node.get("oneOf") or node.get("anyOf") or []:
            ref_name = str(alt.get("$ref", "")).rsplit("/", 1)[-1]
            variant = self.resolve(alt)
            tag_schema = self.resolve(variant.get("properties", {}).get(prop, {}))
            tag = refs.get(ref_name, tag_schema.get("const", tag_schema.get("default")))
            if tag is None and "enum" in tag_schema and len(tag_schema["enum"]) == 1:
                tag = tag_schema["enum"][0]
            if tag is None:
                raise SchemaError(f"{path}: a variant without a '{prop}' tag")
            group = self.group(variant, f"{path}[{tag}]", str(tag), str(tag))
            group.children = [c for c in group.children if c.name != prop]
            union.variants[str(tag)] = group
        default = node.get("default")
        if isinstance(default, Mapping) and prop in default:
            union.default_variant = str(default[prop])
        elif union.variants:
            union.default_variant = next(iter(union.variants))
        return union


def build_form(schema: Mapping[str, Any]) -> Group:
    """The form tree of a model's JSON Schema (``Model.model_json_schema()``).

    Raises:
        SchemaError: for constructs a form cannot represent (free-form mappings, unions of
            models without a discriminator).
    """
    walker = _Walker(schema)
    return walker.group(schema, "", "", str(schema.get("title", "")))


def iter_fields(node: Field | Group | Union) -> list[Field]:
    """Every field below ``node``, variants included."""
    if isinstance(node, Field):
        return [node]
    if isinstance(node, Group):
        return [f for c in node.children for f in iter_fields(c)]
    return [f for g in node.variants.values() for f in iter_fields(g)]


def _convert(text: str, kind: str) -> Any:
    """Text to a scalar of ``kind``; unparseable text is returned as is, for pydantic."""
    value = text.strip()
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return text
    if kind == "boolean":
        lowered = value.lower()
        if lowered in ("true", "on", "1", "yes"):
            return True
        if lowered in ("false", "off", "0", "no", ""):
            return False
        return text
    return text


def _field_value(f: Field, raw: str) -> tuple[bool, Any]:
    """``(present, value)`` of one posted field."""
    if f.kind == "const":
        return True, f.default
    if f.kind == "yaml":
        return False, None
    if f.kind == "boolean":
        return True, _convert(raw, "boolean")
    if raw.strip() == "":
        if f.nullable:
            return True, None
        if f.kind == "list":
            return True, []
        if f.kind == "string" and f.has_default and f.default == "":
            return True, ""
        return False, None
    if f.kind == "list":
        parts = [part.strip() for part in raw.split(",")]
        return True, [_convert(part, f.item_kind) for part in parts if part]
    if f.kind == "enum":
        for option in f.options:  # enums of numbers come back as text
            if str(option) == raw:
                return True, option
        return True, raw
    return True, _convert(raw, f.kind)


def form_to_data(form: Group, values: Mapping[str, str]) -> dict[str, Any]:
    """Nested model input from the flat ``{form path: text}`` a page posted.

    Fields absent from ``values`` are left out (their defaults apply); of a union only the
    variant named by its select is kept.
    """

    def walk(node: Field | Group | Union) -> tuple[bool, Any]:
        if isinstance(node, Field):
            if node.path not in values and node.kind != "const":
                return False, None
            return _field_value(node, str(values.get(node.path, "")))
        if isinstance(node, Union):
            tag = values.get(node.select_path)
            if tag is None:
                return False, None
            variant = node.variants.get(str(tag))
            data: dict[str, Any] = {node.discriminator: tag}
            if variant is not None:
                data.update(walk(variant)[1])
            return True, data
        out: dict[str, Any] = {}
        for child in node.children:
            present, value = walk(child)
            if present:
                out[child.name] = value
        return bool(out) or not node.path, out

    return dict(walk(form)[1])


def error_paths(form: Group, errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """``[{"field": form path, "message"}]`` for pydantic's ``ValidationError.errors()``.

    A location is followed down the form tree as far as it goes (list indices and unknown
    keys stop it), so every message lands on a field, or on its group when the check is a
    whole-model one; ``""`` is the form itself.
    """
    out = []
    for err in errors:
        node: Field | Group | Union = form
        path = ""
        for part in err.get("loc", ()):
            if isinstance(node, Group):
                child = next((c for c in node.children if c.name == str(part)), None)
                if child is None:
                    break
                node, path = child, child.path
            elif isinstance(node, Union):
                variant = node.variants.get(str(part))
                if variant is None:
                    path = node.select_path
                    break
                node, path = variant, variant.path
            else:
                break
        if isinstance(node, Union) and path == node.path:
            path = node.select_path
        message = str(err.get("msg", "invalid value"))
        out.append({"field": path, "message": message})
    return out


__all__ = [
    "VARIANT_SUFFIX",
    "Field",
    "Group",
    "SchemaError",
    "Union",
    "build_form",
    "error_paths",
    "form_to_data",
    "iter_fields",
]
