"""From raw labels (``PER``, ``B-ORG``, ``公司``, ``company``) to the canonical names B2NER works best with."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ..prompts import has_han
from .data import EntityType, Taxonomy, load
from .search import _BIO, search

#: a fuzzy search hit below this score is not trusted as a suggestion.
MIN_SCORE = 60.0


@dataclass(frozen=True)
class Suggestion:
    raw: str
    entry: EntityType | None
    #: "canonical" (already a canonical name), "dataset tag", "alias", "search", or "none".
    basis: str
    reason: str

    def name(self, lang: str) -> str:
        return self.entry.name(lang) if self.entry else self.raw

    @property
    def changes(self) -> bool:
        return self.entry is not None and self.basis != "canonical"

    def to_dict(self, lang: str) -> dict[str, object]:
        return {"raw": self.raw, "label": self.name(lang), "basis": self.basis, "reason": self.reason}


def _strip_tag(raw: str) -> str:
    return _BIO.sub("", raw.strip())


def _dataset_votes(tag: str, taxonomy: Taxonomy) -> tuple[str, list[str]] | None:
    """The type most datasets map this raw tag to (exact spelling first, then case-insensitive)."""
    for same in (lambda a, b: a == b, lambda a, b: a.lower() == b.lower()):
        votes: Counter[str] = Counter()
        where: dict[str, list[str]] = {}
        for dataset in taxonomy.datasets.values():
            for raw, names in dataset.labels.items():
                if same(raw, tag) and names:
                    votes[names[0]] += 1
                    where.setdefault(names[0], []).append(dataset.name)
        if votes:
            best = max(votes, key=lambda n: (votes[n], -len(n)))
            return best, sorted(where[best])
    return None


def suggest_one(raw: str, taxonomy: Taxonomy | None = None) -> Suggestion:
    taxonomy = taxonomy or load()
    tag = _strip_tag(raw)
    exact = taxonomy.types.get(tag) or taxonomy.by_zh.get(tag)
    if exact is not None:
        return Suggestion(raw, exact, "canonical", "already a canonical name")
    voted = _dataset_votes(tag, taxonomy)
    if voted is not None:
        name, datasets = voted
        shown = ", ".join(datasets[:4]) + (f" and {len(datasets) - 4} more" if len(datasets) > 4 else "")
        return Suggestion(raw, taxonomy.types[name], "dataset tag", f"{tag} in {shown} means {name}")
    for entry in taxonomy.types.values():
        if "->" in entry.zh and tag == entry.zh.split("->")[-1]:
            return Suggestion(raw, entry, "alias", f"{tag} is written {entry.zh} in the taxonomy ({entry.en})")
        if tag in entry.aliases or (not has_han(tag) and tag.lower() in (a.lower() for a in entry.aliases)):
            return Suggestion(raw, entry, "alias", f"{tag} is another name for {entry.en}")
    hits = search(tag, limit=1, taxonomy=taxonomy)
    if hits and hits[0].score >= MIN_SCORE:
        entry = hits[0].entry
        if entry.en.lower() == tag.lower():
            return Suggestion(raw, entry, "canonical", "already a canonical name")
        return Suggestion(raw, entry, "search", f"closest taxonomy entry ({hits[0].why})")
    return Suggestion(raw, None, "none", "no taxonomy entry matches; kept as given")


#: the BIO "outside" tag: it marks no entity, so it is never a label to prompt with.
OUTSIDE = frozenset({"O", "o"})


def drop_outside(raw_labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """``raw_labels`` without the outside tag ``O`` (or ``o``), and the tags dropped."""
    return [r for r in raw_labels if r not in OUTSIDE], [r for r in raw_labels if r in OUTSIDE]


def suggest(raw_labels: Sequence[str], taxonomy: Taxonomy | None = None) -> list[Suggestion]:
    taxonomy = taxonomy or load()
    return [suggest_one(raw, taxonomy) for raw in raw_labels]


def suggested_labels(suggestions: Sequence[Suggestion], lang: str) -> list[str]:
    """The label set to use, in order, each name once (``PER.NAM`` and ``PER.NOM`` both give ``person``)."""
    return list(dict.fromkeys(s.name(lang) for s in suggestions))


def dataset_labels(name: str, lang: str | None = None, taxonomy: Taxonomy | None = None) -> list[str] | None:
    """A dataset's label set in canonical names (its own language unless ``lang``), tag order, each once."""
    taxonomy = taxonomy or load()
    dataset = taxonomy.dataset(name)
    if dataset is None:
        return None
    language = lang or dataset.language
    names = (taxonomy.types[n].name(language) for names in dataset.labels.values() for n in names[:1])
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class LabelAdvice:
    """What to tell a user whose labels look like raw dataset tags."""

    #: labels with a confident canonical replacement (a known dataset tag or an alias).
    flagged: list[Suggestion]
    #: the label set with those replaced (order kept; labels that collapse into one name appear once).
    names: list[str]
    #: canonical name -> the user's own label, to write the user's tags back into the output.
    back: dict[str, str]


def advise(labels: Sequence[str], lang: str, taxonomy: Taxonomy | None = None) -> LabelAdvice:
    suggestions = suggest(labels, taxonomy)
    flagged = [s for s in suggestions if s.changes and s.basis in ("dataset tag", "alias")]
    chosen = {s.raw: s.name(lang) for s in flagged}
    names = list(dict.fromkeys(chosen.get(raw, raw) for raw in labels))
    back: dict[str, str] = {}
    for raw in labels:
        back.setdefault(chosen.get(raw, raw), raw)
    return LabelAdvice(flagged, names, {k: v for k, v in back.items() if k != v})
