"""One story, many reports: deciding whether a new hit tells a story already seen.

Pure. Outlets retell the same event, often in another language, so a story
is recognised by any of:

- a near-duplicate title (word-set Jaccard >= :data:`TITLE_SIMILAR`),
- near-duplicate text (a bottom-k sketch of word 4-shingles, estimated
  Jaccard >= :data:`TEXT_SIMILAR`),
- the same company AND the same counterpart (ICE, the Pentagon, ...), which
  is what joins an English and a German report,

and always within :data:`WINDOW` of the story's first report (by the
articles' dates, else when they were found). Reports naming a *different*
company or counterpart never join, however alike their titles: "Salesforce
staff protest CBP contract" (2018) and "... ICE contract" (2026) are two
stories, kept apart by both the window and the counterpart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

#: A later report joins a story only this close to the story's first report.
WINDOW = timedelta(hours=72)
TITLE_SIMILAR = 0.6
#: Titles with fewer distinct words than this are not compared.
TITLE_MIN_WORDS = 4
TEXT_SIMILAR = 0.5
#: Sketch size: the k smallest shingle hashes.
SKETCH_K = 64
_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(
    """the and for with from that this are was were has have its into over about after
    der die das und mit von für fur den dem des ein eine einen gegen bei auf aus zum zur
    sich nicht sind wird""".split()  # noqa: SIM905 (a word list reads better as text)
)


@dataclass(frozen=True)
class StoryKey:
    """What a report is compared by."""

    title_words: frozenset[str]
    #: The k smallest hashes of the text's word 4-shingles.
    sketch: tuple[int, ...]
    company: str | None
    counterpart: str | None
    #: When the reported event happened (the article's date, else when it was found).
    event_at: datetime


def _words(text: str) -> list[str]:
    return [w for w in (m.group(0).casefold() for m in _WORD.finditer(text)) if len(w) > 2]


def sketch(text: str, *, k: int = SKETCH_K, limit: int = 600) -> tuple[int, ...]:
    """The ``k`` smallest 48-bit hashes of the first ``limit`` words' 4-shingles."""
    words = _words(text)[:limit]
    shingles = {" ".join(words[i : i + 4]) for i in range(max(0, len(words) - 3))}
    hashes = {
        int.from_bytes(hashlib.blake2b(s.encode(), digest_size=6).digest(), "big") for s in shingles
    }
    return tuple(sorted(hashes)[:k])


def story_key(
    title: str,
    text: str,
    *,
    company: str | None,
    counterpart: str | None,
    event_at: datetime,
) -> StoryKey:
    """The comparison key of one report."""
    return StoryKey(
        title_words=frozenset(w for w in _words(title) if w not in _STOP),
        sketch=sketch(text),
        company=company.casefold() if company else None,
        counterpart=counterpart.casefold() if counterpart else None,
        event_at=event_at,
    )


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def sketch_similarity(a: Sequence[int], b: Sequence[int], k: int = SKETCH_K) -> float:
    """Estimated Jaccard of two texts from their bottom-k sketches."""
    if not a or not b:
        return 0.0
    union = sorted(set(a) | set(b))[:k]
    both = set(a) & set(b)
    return sum(1 for h in union if h in both) / len(union)


def same_story(new: StoryKey, story: StoryKey, *, window: timedelta = WINDOW) -> bool:
    """True if ``new`` reports the story whose first report is ``story``."""
    if abs(new.event_at - story.event_at) > window:
        return False
    for mine, theirs in ((new.company, story.company), (new.counterpart, story.counterpart)):
        if mine and theirs and mine != theirs:
            return False
    if (
        new.company
        and new.counterpart
        and (new.company, new.counterpart)
        == (
            story.company,
            story.counterpart,
        )
    ):
        return True
    # Short titles ("Staff protest") say too little to call two reports one story.
    short = min(len(new.title_words), len(story.title_words)) < TITLE_MIN_WORDS
    if not short and jaccard(new.title_words, story.title_words) >= TITLE_SIMILAR:
        return True
    return sketch_similarity(new.sketch, story.sketch) >= TEXT_SIMILAR


def pick_story(new: StoryKey, stories: Iterable[tuple[int, StoryKey]]) -> int | None:
    """The id of the earliest story ``new`` belongs to, or None for a new story."""
    best: tuple[datetime, int] | None = None
    for story_id, key in stories:
        if same_story(new, key) and (best is None or (key.event_at, story_id) < best):
            best = (key.event_at, story_id)
    return best[1] if best else None


def entities(
    terms: Sequence[str], tags: Sequence[str], roles: Mapping[tuple[str, str], str]
) -> tuple[str | None, str | None]:
    """(company, counterpart) of a hit: a ``company:``/``counterpart:`` tag, else the
    first matched term the rules give that role (as the browse view does)."""
    out: list[str | None] = []
    for role in ("company", "counterpart"):
        tagged = next((t.split(":", 1)[1] for t in tags if t.startswith(f"{role}:")), None)
        named = next((roles[(t, role)] for t in terms if (t, role) in roles), None)
        out.append(tagged or named)
    return out[0], out[1]


__all__ = [
    "WINDOW",
    "StoryKey",
    "entities",
    "jaccard",
    "pick_story",
    "same_story",
    "sketch",
    "sketch_similarity",
    "story_key",
]
