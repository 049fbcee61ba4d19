r"""One normalization for every untrusted string that enters the live stack.

Headlines, feed entries, LLM answers and the free text of control requests (``who``,
``why``, ``reason``) all pass through :func:`clean_text` once, where they enter
(``NewsItem``, the audit record, the request models). After it a string:

* is valid Unicode that encodes to UTF-8 (unpaired surrogates, which JSON's ``"\ud800"``
  allows, are replaced by U+FFFD instead of failing later in SQLite or a file write);
* is in NFKC form, so full-width, math-alphanumeric and other compatibility look-alikes
  read as the plain letters (``ｈａｌｔ`` -> ``halt``);
* has no control characters (C0/C1; tabs and line breaks become spaces), no format
  characters (zero-width spaces and joiners, bidi overrides, soft hyphens, BOM), no
  private-use or unassigned code points: hidden characters cannot split a keyword;
* has the common Cyrillic/Greek homoglyphs of Latin letters folded to Latin when they
  appear in a word that also has Latin letters (``trаding`` with a Cyrillic ``а``), so a
  mixed-script word cannot dodge the rules; a word wholly in another script is kept;
* has runs of whitespace collapsed to one space, no leading/trailing space, and at most
  ``max_chars`` characters (longer text is cut and ends with an ellipsis).
"""

from __future__ import annotations

import re
import unicodedata

REPLACEMENT = "\ufffd"
"""What an unpaired surrogate becomes."""

_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Cs"})
_SPACE_CONTROLS = frozenset("\t\n\r\v\f\x1c\x1d\x1e\x1f\x85\u2028\u2029")
_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")

HOMOGLYPHS: dict[str, str] = {
    # Cyrillic lower / upper
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
    "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l",
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "К": "K", "М": "M", "Н": "H", "О": "O",
    "Р": "P", "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "І": "I", "Ї": "I",
    "Ј": "J", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Һ": "H", "Ӏ": "I",
    # Greek lower / upper
    "α": "a", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ϲ": "c", "ϳ": "j",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C",
}  # fmt: skip
"""Confusable letters folded to Latin inside mixed-script words."""

_HOMOGLYPH_TABLE = str.maketrans(HOMOGLYPHS)


def _drop_surrogates(text: str) -> str:
    # Valid surrogate pairs cannot exist in a Python str (they are joined code points);
    # any surrogate left is unpaired and would make UTF-8 encoding fail.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join(REPLACEMENT if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def _fold_word(match: re.Match[str]) -> str:
    word = match.group(0)
    if not any(c in HOMOGLYPHS for c in word):
        return word
    if any("a" <= c.lower() <= "z" for c in word):
        return word.translate(_HOMOGLYPH_TABLE)
    return word


def clean_text(value: object, max_chars: int | None = None) -> str:
    """Return ``value`` as safe, normalized text (see the module docstring).

    Args:
        value: Any object; non-strings are converted with ``str`` first.
        max_chars: Cut longer results to this many characters (ellipsis included).
    """
    text = value if isinstance(value, str) else str(value)
    text = _drop_surrogates(text)
    text = unicodedata.normalize("NFKC", text)
    out = []
    for ch in text:
        if ch in _SPACE_CONTROLS:
            out.append(" ")
        elif unicodedata.category(ch) in _REMOVED_CATEGORIES:
            continue
        else:
            out.append(ch)
    text = _WORD.sub(_fold_word, "".join(out))
    text = _WS.sub(" ", text).strip()
    if max_chars is not None and len(text) > max_chars:
        text = text[: max(max_chars - 1, 0)] + "…"
    return text
