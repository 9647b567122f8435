"""Pure matching: ``Article`` x ``RuleSet`` -> ``[Match]`` with evidence.

No I/O. The text (title, a newline, then the body) is cut into words once,
with the same :func:`monitor.rules.split_words` that cut the terms, and every
term is looked up by its first word, so the cost grows with the text, not with
the number of rules. A term matches whole words only; a multi-word term also
needs the same kind of gap between its words (any whitespace for a space, a
hyphen for a hyphen). Sentences are found only for rules that matched, to
pick the evidence shown in alerts.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Sequence
from itertools import pairwise

from monitor.rules import Rule, RuleSet, Term, TermIndex, normalize_gap, split_words
from monitor.types import Article, Match

__all__ = ["MAX_TEXT_CHARS", "SENTENCE_CHARS", "find_terms", "match_article", "split_sentences"]

#: Only this much of title + text is matched (FAULTS C19: a 5 MB page must not stall a poll).
MAX_TEXT_CHARS = 200_000
#: Evidence sentences are trimmed to about this many characters.
SENTENCE_CHARS = 400

# Invisible characters that split a word in two for the tokenizer but not
# for a reader (soft hyphens are common in German news HTML).
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))

# A sentence ends at . ! ? or … (plus closing quotes/brackets) before
# whitespace, or at a line break (paragraphs, and the title line); neither
# when a lower-case word follows.
_END = re.compile("[.!?\u2026]+[\"'\u00bb\u00ab\u201c\u201d\u2018\u2019)\\]]*(?=\\s)|\n")
_NEXT_WORD = re.compile(r"\s*(\S*)")
# Words that end in a period without ending the sentence (English and German).
_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sen",
        "rep",
        "gov",
        "gen",
        "col",
        "lt",
        "st",
        "jr",
        "sr",
        "vs",
        "no",
        "nr",
        "bzw",
        "ca",
        "vgl",
        "evtl",
        "ggf",
        "inkl",
        "usw",
        "bspw",
        "sog",
        "dt",
        "engl",
        "ehem",
        "mio",
        "mrd",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "okt",
        "nov",
        "dec",
        "dez",
        "abs",
        "art",
        "bd",
        "hrsg",
    ]
)
_MONTHS = frozenset(
    [
        "januar",
        "februar",
        "märz",
        "april",
        "mai",
        "juni",
        "juli",
        "august",
        "september",
        "oktober",
        "november",
        "dezember",
        "jänner",
    ]
)
_SPACES = re.compile(r"\s+")


def match_article(article: Article, ruleset: RuleSet) -> list[Match]:
    """Return one :class:`Match` per rule of ``ruleset`` that ``article`` satisfies.

    The title and text are matched together (only the first
    :data:`MAX_TEXT_CHARS`). Each match lists the rule's matched terms as the
    rule wrote them (``ICE``, ``Mitarbeiter*``; no ``=`` marker), in the order they first occur, and the sentence holding
    the most of them.

    >>> from monitor.rules import rules_from_text
    >>> rs = rules_from_text("rules: [{name: r, all: [[Salesforce], [Mitarbeiter*]]}]")
    >>> m = match_article(Article(url=None, title="", text="Salesforce-Mitarbeiterinnen."), rs)
    >>> m[0].terms
    ('Salesforce', 'Mitarbeiter*')
    """
    text = prepare_text(article.title + "\n" + article.text)
    index = ruleset.term_index
    hits = find_terms(text, index)
    if not hits:
        return []
    sentences: list[tuple[int, int]] | None = None
    out = []
    for rule in ruleset.rules:
        matched = _rule_terms(rule, index, hits)
        if matched is None:
            continue
        if sentences is None:
            sentences = split_sentences(text)
        out.append(
            Match(
                rule=rule.name,
                terms=tuple(dict.fromkeys(t.text + ("*" if t.prefix else "") for t in matched)),
                sentence=_evidence(text, sentences, [hits[index.ids[t]] for t in matched]),
                channels=rule.channels,
            )
        )
    return out


def prepare_text(text: str) -> str:
    """Cap, NFC-normalise and clean ``text`` the way :func:`match_article` does."""
    return unicodedata.normalize("NFC", text[:MAX_TEXT_CHARS]).translate(_INVISIBLE)


def find_terms(text: str, index: TermIndex) -> dict[int, list[tuple[int, int]]]:
    """Where each term of ``index`` occurs in ``text``: term id -> [(start, end)].

    ``text`` should come from :func:`prepare_text`.
    """
    words = list(split_words(text))
    folded = [w.group().casefold() for w in words]
    first_word, prefixes = index.first_word, index.prefixes
    hits: dict[int, list[tuple[int, int]]] = {}
    for i, f in enumerate(folded):
        candidates: list[int] = list(first_word.get(f, ()))
        for n, table in prefixes.items():
            if len(f) >= n and (ids := table.get(f[:n])):
                candidates.extend(ids)
        for tid in candidates:
            end = _match_at(index.terms[tid], i, words, folded, text)
            if end is not None:
                hits.setdefault(tid, []).append((words[i].start(), end))
    return hits


def _match_at(
    term: Term, i: int, words: Sequence[re.Match[str]], folded: Sequence[str], text: str
) -> int | None:
    """The end offset of ``term`` if it starts at word ``i``, else None."""
    n = len(term.words)
    if i + n > len(words):
        return None
    want = term.folded
    for k in range(n):
        got = words[i + k].group() if term.case_sensitive else folded[i + k]
        if term.prefix and k == n - 1:
            if not got.startswith(want[k]):
                return None
        elif got != want[k]:
            return None
        if (
            k
            and normalize_gap(text[words[i + k - 1].end() : words[i + k].start()])
            != (term.gaps[k - 1])
        ):
            return None
    return words[i + n - 1].end()


def _rule_terms(
    rule: Rule, index: TermIndex, hits: dict[int, list[tuple[int, int]]]
) -> list[Term] | None:
    """The rule's matched ``all``/``any`` terms in text order, or None if it fails."""
    ids = index.ids

    def group_hit(terms: Sequence[Term]) -> bool:
        return any(ids[t] in hits for t in terms)

    if not all(group_hit(g.terms) for g in rule.all):
        return None
    if rule.any and not any(group_hit(g.terms) for g in rule.any):
        return None
    if any(group_hit(g.terms) for g in rule.none):
        return None
    matched = {t for g in (*rule.all, *rule.any) for t in g.terms if ids[t] in hits}
    return sorted(matched, key=lambda t: (hits[ids[t]][0][0], t.written))


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Cut ``text`` into sentences: a list of (start, end) offsets, whitespace trimmed.

    Handles English and German: no cut after common abbreviations (``Dr.``,
    ``bzw.``), initials and ``U.S.``, German ordinals before a month
    (``am 3. Oktober``), or before a lower-case word.
    """
    cuts = [0]
    for m in _END.finditer(text):
        nxt = _NEXT_WORD.match(text, m.end())
        following = nxt.group(1) if nxt else ""
        if following[:1].islower():
            continue
        if m.group().startswith(".") and not m.group().startswith(".."):
            before = re.search(r"(\w+)$", text[max(0, m.start() - 30) : m.start()])
            word = before.group(1) if before else ""
            if len(word) == 1 and word.isalpha():
                continue  # an initial, or U.S.
            if word.casefold() in _ABBREVIATIONS:
                continue
            if word.isdigit() and len(word) <= 2 and following.casefold() in _MONTHS:
                continue
        cuts.append(m.end())
    cuts.append(len(text))
    spans = []
    for a, b in pairwise(cuts):
        segment = text[a:b]
        stripped = segment.strip()
        if stripped:
            start = a + (len(segment) - len(segment.lstrip()))
            spans.append((start, start + len(stripped)))
    return spans


def _evidence(
    text: str, sentences: list[tuple[int, int]], occurrences: list[list[tuple[int, int]]]
) -> str:
    """The sentence holding the most distinct matched terms (earliest on a tie), trimmed."""
    starts = [s for s, _ in sentences]
    per_sentence: dict[int, set[int]] = {}
    first_in: dict[int, int] = {}
    for term_no, spans in enumerate(occurrences):
        for start, _end in spans:
            k = bisect.bisect_right(starts, start) - 1
            if k < 0:
                continue
            per_sentence.setdefault(k, set()).add(term_no)
            first_in[k] = min(first_in.get(k, start), start)
    if not per_sentence:
        return ""
    best = min(per_sentence, key=lambda k: (-len(per_sentence[k]), k))
    s, e = sentences[best]
    return _trim(text, s, e, first_in[best])


def _trim(text: str, start: int, end: int, focus: int) -> str:
    """``text[start:end]``, whitespace collapsed, cut to ~SENTENCE_CHARS around ``focus``."""
    sentence = _SPACES.sub(" ", text[start:end])
    if len(sentence) <= SENTENCE_CHARS:
        return sentence
    # Keep a little context before the first matched term, the rest after it.
    lo = max(start, focus - SENTENCE_CHARS // 4)
    hi = min(end, lo + SENTENCE_CHARS)
    lo = max(start, hi - SENTENCE_CHARS)
    if lo > start:
        space = text.find(" ", lo, focus)
        lo = space + 1 if space != -1 else lo
    if hi < end:
        space = text.rfind(" ", lo, hi)
        hi = space if space > focus else hi
    body = _SPACES.sub(" ", text[lo:hi]).strip()
    return ("… " if lo > start else "") + body + (" …" if hi < end else "")
