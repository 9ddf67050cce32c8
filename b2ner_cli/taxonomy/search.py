"""Ranked search over the taxonomy: names, aliases and descriptions in both languages, tolerant of case,
typos, plural/singular and BIO prefixes. Pure Python; an index is built once per process."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..prompts import has_han
from .data import EntityType, Taxonomy, load

_BIO = re.compile(r"^(?:[BIESLU])[-_]", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s_\-./]+")
_WORD = re.compile(r"[a-z0-9]+")


def _singular(word: str) -> str:
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def normalize(text: str) -> str:
    """Lowercase, BIO prefix off, separators to spaces, each word singular (``B-ORGs`` -> ``org``)."""
    text = _BIO.sub("", text.strip())
    words = _SEPARATORS.sub(" ", text.lower()).split()
    return " ".join(_singular(w) for w in words)


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (a swap of neighbours costs 1), giving up above ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


def _typo_limit(word: str) -> int:
    return 0 if len(word) < 4 else 1 if len(word) < 8 else 2


@dataclass(frozen=True)
class _Indexed:
    entry: EntityType
    names: tuple[str, ...]  # normalized canonical names (en, zh, zh leaf)
    aliases: tuple[str, ...]  # normalized
    words: frozenset[str]  # words of the names and aliases
    text_en: str  # normalized description + examples
    text_zh: str


@dataclass(frozen=True)
class Match:
    entry: EntityType
    score: float
    why: str


def _index(taxonomy: Taxonomy) -> list[_Indexed]:
    cached: list[_Indexed] | None = taxonomy.__dict__.get("_search_index")
    if cached is not None:
        return cached
    items = []
    for t in taxonomy.types.values():
        leaf = t.zh.split("->")[-1]
        names = tuple(dict.fromkeys([normalize(t.en), t.zh, leaf]))
        aliases = tuple(dict.fromkeys(normalize(a) if not has_han(a) else a for a in t.aliases))
        words = frozenset(w for n in (*names, *aliases) for w in n.split() if not has_han(w))
        text_en = normalize(t.description_en + " " + " ".join(e for e in t.examples if not has_han(e)))
        text_zh = t.description_zh + " " + " ".join(e for e in t.examples if has_han(e))
        items.append(_Indexed(t, names, aliases, words, text_en, text_zh))
    taxonomy.__dict__["_search_index"] = items
    return items


def _score(item: _Indexed, query: str, raw: str) -> tuple[float, str]:
    if query in item.names:
        return 100.0, "name"
    if raw in item.entry.aliases:
        return 95.0, f"alias {raw}"
    if query in item.aliases:
        return 90.0, "alias"
    best, why = 0.0, ""
    if has_han(query):
        for name in item.names:
            if query in name and 75.0 - (len(name) - len(query)) > best:
                best, why = 75.0 - (len(name) - len(query)), "name contains"
        for alias in item.aliases:
            if query in alias and best < 60.0:
                best, why = 60.0, "alias contains"
        if query in item.text_zh and best < 20.0:
            best, why = 20.0, "description"
        return best, why
    query_words = query.split()
    for name in (*item.names, *item.aliases):
        if name.startswith(query) and len(query) >= 3:
            score = (70.0 if name in item.names else 55.0) - 0.2 * (len(name) - len(query))
            if score > best:
                best, why = score, "prefix"
        name_words = name.split()
        if len(query_words) <= len(name_words) and all(w in name_words for w in query_words):
            score = (65.0 if name in item.names else 50.0) - 2.0 * (len(name_words) - len(query_words))
            if score > best:
                best, why = score, "words"
        limit = _typo_limit(query)
        if limit and abs(len(name) - len(query)) <= limit:
            distance = edit_distance(query, name, limit)
            if distance <= limit:
                score = (80.0 if name in item.names else 70.0) - 10.0 * distance
                if score > best:
                    best, why = score, "spelling"
    if best == 0.0 and query_words:
        hits = sum(1 for w in query_words if w in item.words)
        if hits:
            best, why = 35.0 * hits / len(query_words), "word"
        elif all(re.search(rf"\b{re.escape(w)}", item.text_en) for w in query_words):
            best, why = 20.0, "description"
    return best, why


def search(query: str, *, limit: int = 10, taxonomy: Taxonomy | None = None) -> list[Match]:
    """Entries ranked by how well they match ``query`` (best first); empty when nothing matches."""
    taxonomy = taxonomy or load()
    raw = query.strip()
    normalized = raw if has_han(raw) else normalize(raw)
    if not normalized:
        return []
    matches = []
    for item in _index(taxonomy):
        score, why = _score(item, normalized, raw)
        if score > 0:
            matches.append(Match(item.entry, score, why))
    depth = {t.en: len(taxonomy.path(t)) for t in (m.entry for m in matches)}
    matches.sort(key=lambda m: (-m.score, depth[m.entry.en], m.entry.en))
    return matches[:limit]
