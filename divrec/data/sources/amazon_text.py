"""Cleaning of Amazon metadata text: HTML markup, scrape junk, title fallbacks.

Real metadata carries markup. The 2018 files have raw and escaped HTML in ``description``
(a list of strings), ``<img ... alt="AMAZON FASHION">`` in ``main_cat`` and, for some
categories, titles that are scrape fragments such as ``<span class="a-size-medium
a-color-secondary"``. :func:`clean_text` unescapes entities and removes HTML tags (only real
tag names, so ``<USB-C>`` survives; ``<script>``/``<style>`` bodies go too; an ``<img>`` keeps
its ``alt`` text). :func:`is_junk_title` flags titles that are empty after cleaning or still
look like markup or code. :class:`TitleCleaner` picks each item's title: the cleaned title,
else the first sentence of the description, else brand and leaf category, else the item id,
and counts what it did (``text/*`` data stats).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

TAG_NAMES = (
    "a abbr b big blockquote body br button caption center cite code col dd div dl dt em "
    "font form h1 h2 h3 h4 h5 h6 head header hr html i iframe img input label li link meta "
    "nav noscript ol option p pre s script section select small span strike strong style sub "
    "sup table tbody td tfoot th thead title tr tt u ul"
).split()
_TAG = "|".join(sorted(TAG_NAMES, key=len, reverse=True))
# <script>...</script> and <style>...</style>: the body is code, not text.
_CODE_BLOCK = re.compile(r"<(script|style)\b[^>]*>.*?(</\1\s*>|$)", re.I | re.S)
_IMG_ALT = re.compile(r"<img\b[^>]*?\balt\s*=\s*([\"'])(.*?)\1[^>]*>", re.I | re.S)
# A complete tag, a comment, or an unterminated tag fragment at the end of the string.
_MARKUP = re.compile(rf"<!--.*?(-->|$)|</?(?:{_TAG})\b(?:[^<>]*>|[^<>]*$)", re.I | re.S)
# What a title that is markup or code looks like even once its tags are gone.
_JUNK = re.compile(
    r"""\b(class|style|href|src|id)\s*=\s*["']|^\s*var\s+\w+\s*=|function\s*\(|[{};]\s*$"""
    r"|getTime\(\)|\ba-(size|color|text)-\w+",
    re.I,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
MAX_FALLBACK_CHARS = 80


def clean_text(value: Any) -> tuple[str, bool]:
    """(plain text, whether markup was removed). Lists are joined with spaces.

    Entities are unescaped first, so escaped markup (``&lt;b&gt;``) is stripped too."""
    if value is None:
        return "", False
    if isinstance(value, (list, tuple)):
        parts = [clean_text(v) for v in value]
        return " ".join(p for p, _ in parts if p), any(s for _, s in parts)
    raw = html.unescape(str(value)) if "&" in str(value) else str(value)
    if "<" not in raw:  # fast path: most fields carry no markup
        return " ".join(raw.split()), False
    text = _CODE_BLOCK.sub(" ", raw)
    text = _IMG_ALT.sub(lambda m: f" {m.group(2)} ", text)
    text = _MARKUP.sub(" ", text)
    stripped = text != raw
    return " ".join(text.split()), stripped


def is_junk_title(title: str) -> bool:
    """True for a title that is no product name: empty, no letter or digit, or code-like."""
    return not any(c.isalnum() for c in title) or bool(_JUNK.search(title))


def first_sentence(text: str, limit: int = MAX_FALLBACK_CHARS) -> str:
    """The first sentence of ``text``, cut at a word boundary to at most ``limit`` chars."""
    sentence = _SENTENCE_END.split(text.strip(), maxsplit=1)[0].rstrip(".!? ")
    if len(sentence) <= limit:
        return sentence
    cut = sentence[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:- ")


@dataclass
class TitleCleaner:
    """Clean item fields and choose titles, counting each kind of repair.

    ``html_stripped``: items with markup removed from any text field; ``cleaned_titles``:
    titles that had markup removed or were junk; ``titles_from_fallback``: titles taken from
    the description, brand or category; ``titles_from_id``: items left with their id as title.
    """

    html_stripped: int = 0
    cleaned_titles: int = 0
    titles_from_fallback: int = 0
    titles_from_id: int = 0

    def fields(self, item: str, title: Any, description: Any, brand: Any, main: Any) -> dict:
        """Clean text fields of one item: ``title``, ``description``, ``brand``, ``main``."""
        t, t_stripped = clean_text(title)
        d, d_stripped = clean_text(description)
        b, b_stripped = clean_text(brand)
        m, m_stripped = clean_text(main)
        self.html_stripped += t_stripped or d_stripped or b_stripped or m_stripped
        junk = bool(t) and is_junk_title(t) or (t_stripped and not t)
        self.cleaned_titles += bool(t_stripped or junk)
        if junk:
            t = ""
        return {"title": t, "description": d, "brand": "" if is_junk_title(b) else b, "main": m}

    def title(self, item: str, title: str, description: str, brand: str, leaf: str) -> str:
        """``title`` when present, else a fallback from the other fields, else ``item``."""
        if title:
            return title
        fallback = first_sentence(description) if description else ""
        if not fallback or is_junk_title(fallback):
            fallback = " ".join(p for p in (brand, leaf) if p)
        if fallback:
            self.titles_from_fallback += 1
            return fallback
        self.titles_from_id += 1
        return item

    def stats(self) -> dict[str, int]:
        """The counts as ``text/<name>`` data stats."""
        return {
            "text/html_stripped": self.html_stripped,
            "text/cleaned_titles": self.cleaned_titles,
            "text/titles_from_fallback": self.titles_from_fallback,
            "text/titles_from_id": self.titles_from_id,
        }
