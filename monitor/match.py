"""Pure matching: ``Article`` x ``RuleSet`` -> ``[Match]`` with evidence.

No I/O. The title and text are prepared once (capped, NFC, whitespace runs
collapsed to one character so offsets stay put, typographic dashes and
apostrophes made plain), then every term of every rule is found in one pass
of a multi-pattern automaton over the lower-cased text (the accelerator's
trie walked from word starts, else hyperscan, else pyahocorasick:
:class:`monitor.rules.TermIndex`); each candidate is checked for word
boundaries and, for case-sensitive terms, the exact case.
RE2 patterns run on their own. A rule none of whose required terms occurred
is skipped at once (``TermIndex.required``); the others are evaluated on the
occurrences alone: fields and proximity (``within``) are ranges of the text.
Sentences are cut only when a rule needs them or matched.

:func:`reference_find_terms` is the slow, obviously-correct matcher (word by
word, as the first version did); tests and ``bench/bench_match.py`` check
that the automaton finds exactly what it finds.

The work per occurrence (the candidate filter, sentence cutting, evidence,
grouping, the shortcut for single-group rules) has a C twin in the optional ``monitor._speedups`` extension
(``monitor/_speedups.c``, built by ``pip install`` where a compiler is
present). It is used when it imported; the Python code here stays the
definition, and ``tests/test_match_speedups.py`` checks the two agree.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, pairwise
from typing import Any

from monitor.rules import (
    Cond,
    Condition,
    Group,
    KeyInfo,
    Rule,
    RuleSet,
    Term,
    TermIndex,
    fold,
    fold_cased,
    lower_text,
    normalize_gap,
    split_words,
)
from monitor.types import Article, Match

try:
    # The optional C accelerator (monitor/_speedups.c): the same results, faster.
    # Tests and bench/bench_match.py set this to None to run the pure-Python path.
    from monitor import _speedups
except ImportError:  # not built: the pure-Python code below does all the work
    _speedups = None  # type: ignore[assignment]

__all__ = [
    "MAX_TEXT_CHARS",
    "SENTENCE_CHARS",
    "Explanation",
    "Prepared",
    "explain_article",
    "find_terms",
    "match_article",
    "prepare",
    "reference_find_terms",
    "split_sentences",
]

#: Only this much of title + text is matched (FAULTS C19: a 5 MB page must not stall a poll).
MAX_TEXT_CHARS = 200_000
#: Evidence sentences are trimmed to about this many characters.
SENTENCE_CHARS = 400

_INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE}]")
# A whitespace run holding a line break becomes one line break, any other run
# one space: each run keeps one character, so "open\n\n letter" is "open letter"
# to the automaton while paragraphs still end sentences. These are the
# characters other than space and line break that str.isspace() and \\s call
# whitespace (tests check the list against every code point).
_ODD_SPACES = (
    "\t\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_ODD_ASCII_SPACES = "\t\x0b\x0c\r\x1c\x1d\x1e\x1f"
_PLAIN: dict[str, str] = dict(
    {
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2212": "-",
        "\u2019": "'",
        "\u2018": "'",
        "\u02bc": "'",
    }
)
_WORD_TAIL = re.compile(r"[^\W_]*")
_WORD = re.compile(r"[^\W_]+")
# Words either side an exclusion looks at are counted only this far (characters).
_NEAR_CHARS = 2000


@dataclass(frozen=True)
class Prepared:
    """An article's title and text, ready for matching. All offsets are into ``shown``."""

    #: Title, a line break, text: capped, NFC, whitespace runs collapsed.
    shown: str
    #: ``shown`` with plain dashes and apostrophes and line breaks as spaces (same length).
    canon: str
    #: ``canon`` lower-cased (same length): what the automaton reads.
    low: str
    #: Where the title ends (the line break after it is at this offset).
    title_end: int


def _clean(text: str) -> str:
    if not text.isascii():
        # NFC's own quick check costs a table look-up per character; the
        # accelerator first rules out the characters NFC could change at all.
        if _speedups is None or not _speedups.nfc_stable(text):
            text = unicodedata.normalize("NFC", text)
        # One `in` per character runs at memory speed; a regex over every character does not.
        if any(c in text for c in _INVISIBLE):
            text = _INVISIBLE_RE.sub("", text)
        odd = _ODD_SPACES
    else:
        odd = _ODD_ASCII_SPACES
    if _untidy(text, odd):
        # A run holding a line break becomes one line break, any other run one space.
        text = "\n".join([line for part in text.split("\n") if (line := " ".join(part.split()))])
    return text


def _untidy(text: str, odd: str) -> bool:
    """Whether ``text`` has whitespace other than single spaces and line breaks between words.

    ``odd`` lists the other whitespace characters ``text`` may hold.
    :func:`monitor._speedups.untidy` answers the same in one pass.
    """
    if _speedups is not None:
        return _speedups.untidy(text)
    return any(c in text for c in odd) or "  " in text or _untidy_lines(text)


def _untidy_lines(text: str) -> bool:
    """Whether ``text`` starts or ends with whitespace or has a line break next to one."""
    if text[:1].isspace() or text[-1:].isspace():
        return True
    # Line breaks are few: finding each beats scanning for " \n", "\n " and "\n\n".
    i = text.find("\n")
    while i != -1:
        if text[i - 1] == " " or text[i + 1] in " \n":
            return True
        i = text.find("\n", i + 1)
    return False


def prepare_text(text: str) -> str:
    """Cap, NFC-normalise and clean ``text`` (no whitespace changes)."""
    return _INVISIBLE_RE.sub("", unicodedata.normalize("NFC", text[:MAX_TEXT_CHARS]))


def prepare(title: str, text: str) -> Prepared:
    """Prepare an article's title and text (together capped at :data:`MAX_TEXT_CHARS`)."""
    title = _clean(title[:MAX_TEXT_CHARS])
    body = _clean(text[: max(0, MAX_TEXT_CHARS - len(title) - 1)])
    shown = title + "\n" + body
    canon = shown.replace("\n", " ")
    if not canon.isascii():
        for char, plain in _PLAIN.items():
            if char in canon:
                canon = canon.replace(char, plain)
    return Prepared(shown=shown, canon=canon, low=_lower(canon), title_end=len(title))


def _lower(text: str) -> str:
    """:func:`monitor.rules.lower_text`, in C where the accelerator can."""
    # str.lower() runs a full case mapping per character of non-ASCII text;
    # the accelerator answers ASCII letters from a table (None: ask Python).
    lower = getattr(_speedups, "lower", None)
    if lower is not None and not text.isascii():
        low: str | None = lower(text)
        if low is not None:
            return low
    return lower_text(text)


def find_terms(p: Prepared, index: TermIndex) -> dict[int, list[tuple[int, int]]]:
    """Where each term of ``index`` occurs: term id -> sorted [(start, end)] in ``p.shown``."""
    low, canon = p.low, p.canon
    hits: dict[int, list[tuple[int, int]]]
    speedups = _speedups
    if speedups is not None and index.trie is not None:
        hits = index.trie.find(low, canon)
    elif speedups is not None and index.database is not None:
        data = low.encode("utf-8", "surrogatepass")
        collector = speedups.Collector()
        index.database.scan(data, match_event_handler=collector, scratch=index.scratch())
        hits = speedups.hits_from_collector(collector, data, low, canon, _key_table(index))
    elif speedups is not None and index.automaton is not None:
        hits = speedups.hits_from_iter(index.automaton.iter(low), low, canon, _key_table(index))
    else:
        hits = _filter(p, _candidates(low, index))
    for tid, rx in index.regexes:
        spans = [m.span() for m in rx.finditer(canon)]
        if spans:
            hits.setdefault(tid, []).extend(spans)
    if index.slow:
        found = reference_find_terms(p, [index.terms[i] for i in index.slow])
        for k, spans in found.items():
            hits.setdefault(index.slow[k], []).extend(spans)
    # The trie is walked start by start, so its lists come sorted (regex and
    # slow terms have lists of their own, sorted too); the automatons report
    # by end offset.
    if index.trie is None:
        for spans in hits.values():
            spans.sort()
    return hits


def _key_table(index: TermIndex) -> Any:
    """``index.key_info`` as the accelerator's flat table, built on first use and kept."""
    # Kept in the instance dict, as functools.cached_property would (the
    # dataclass is frozen, its fields stay as they are).
    table = index.__dict__.get("_key_table")
    if table is None:
        assert _speedups is not None
        table = index.__dict__["_key_table"] = _speedups.KeyTable(index.key_info)
    return table


def _candidates(low: str, index: TermIndex) -> Iterable[tuple[int, KeyInfo]]:
    """Each candidate: (offset of its last character, (length, values))."""
    info = index.key_info
    if index.trie is not None:
        return [(last, info[key]) for last, key in index.trie.candidates(low)]
    if index.database is not None:
        return _scan(low, index)
    if index.automaton is not None:
        return [(last, info[key]) for last, key in index.automaton.iter(low)]
    return ()


def _filter(
    p: Prepared, candidates: Iterable[tuple[int, KeyInfo]]
) -> dict[int, list[tuple[int, int]]]:
    """The candidates that are whole words (or prefixes) in the right case: term id -> spans.

    :func:`monitor._speedups.hits_from_iter` does the same in C.
    """
    low, canon = p.low, p.canon
    n = len(low)
    hits: dict[int, list[tuple[int, int]]] = {}
    for last, (length, values) in candidates:
        start = last - length + 1
        if start and low[start - 1].isalnum():
            continue
        after = last + 1
        more = after < n and low[after].isalnum()
        for tid, exact, prefix in values:
            if more and not prefix:
                continue
            if exact is not None and canon[start:after] != exact:
                continue
            stop = _WORD_TAIL.match(low, after).end() if more else after  # type: ignore[union-attr]
            if tid in hits:
                hits[tid].append((start, stop))
            else:
                hits[tid] = [(start, stop)]
    return hits


# Continuation bytes of UTF-8 (0b10xxxxxx) become 1, every other byte 0: a
# character ends before byte offset x where x minus the 1s before x says.
_CONTINUATION = bytes(1 if 0x80 <= b < 0xC0 else 0 for b in range(256))


def _scan(low: str, index: TermIndex) -> list[tuple[int, KeyInfo]]:
    """Run the hyperscan database over ``low`` (as UTF-8), in character offsets."""
    data = low.encode("utf-8", "surrogatepass")
    found: list[tuple[int, int]] = []
    append = found.append

    def on_match(key: int, _start: int, end: int, _flags: int, _context: object) -> None:
        append((end, key))

    index.database.scan(data, match_event_handler=on_match, scratch=index.scratch())
    info = index.key_info
    if len(data) == len(low):  # ASCII: bytes are characters
        return [(end - 1, info[key]) for end, key in found]
    found.sort()  # by end offset, so the count of continuation bytes only grows
    marks = data.translate(_CONTINUATION)
    out = []
    seen = extra = 0
    for end, key in found:
        extra += marks.count(1, seen, end)
        seen = end
        out.append((end - extra - 1, info[key]))
    return out


def reference_find_terms(p: Prepared, terms: Sequence[Term]) -> dict[int, list[tuple[int, int]]]:
    """The brute-force reference for :func:`find_terms`: every term tried at every word.

    Slow on purpose: it shares nothing with the automaton but the definition
    of a word (:func:`monitor.rules.split_words`) and of folding.
    """
    text = p.shown
    words = list(split_words(text))
    folded = [fold(w.group()) for w in words]
    cased = [fold_cased(w.group()) for w in words]
    hits: dict[int, list[tuple[int, int]]] = {}
    for tid, term in enumerate(terms):
        if term.regex:
            continue
        n = len(term.words)
        for i in range(len(words) - n + 1):
            ok = True
            for k in range(n):
                got = cased[i + k] if term.case_sensitive else folded[i + k]
                want = term.folded[k]
                last = k == n - 1
                if not (got.startswith(want) if term.prefix and last else got == want):
                    ok = False
                    break
                if (
                    k
                    and normalize_gap(text[words[i + k - 1].end() : words[i + k].start()])
                    != (term.gaps[k - 1])
                ):
                    ok = False
                    break
            if ok:
                hits.setdefault(tid, []).append((words[i].start(), words[i + n - 1].end()))
    return hits


# --------------------------------------------------------------------------
# Evaluating rules on the occurrences


@dataclass
class _Result:
    """What a condition matched: term ids, their spans, score and categories."""

    spans: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    score: float = 0.0
    categories: list[str] = field(default_factory=list)

    def add(self, other: _Result) -> None:
        # Span lists may be shared with the article's hits: never change one
        # in place, join into a new list instead.
        mine = self.spans
        if not mine:
            mine.update(other.spans)
        else:
            for tid, spans in other.spans.items():
                old = mine.get(tid)
                # Kept sorted: _to_match takes a list's first span as its earliest.
                mine[tid] = spans if old is None else sorted(old + spans)
        self.score += other.score
        self.categories += other.categories


class _Context:
    """One article's occurrences and the lazily computed things rules may need."""

    def __init__(self, p: Prepared, index: TermIndex, hits: dict[int, list[tuple[int, int]]]):
        self.p = p
        self.index = index
        self.hits = hits
        self.size = len(p.shown)
        self._groups: dict[int, dict[int, list[tuple[int, int]]]] = {}
        self._starts: dict[int, list[int]] = {}
        self._sentences: list[tuple[int, int]] | None = None
        self._starts_of_sentences: list[int] | None = None
        self._grouped: dict[int, dict[int, list[tuple[int, int]]]] | None = None

    def _by_group(self) -> dict[int, dict[int, list[tuple[int, int]]]]:
        """``id(group)`` -> term id -> spans, for every indexed group: one pass over the hits."""
        if self._grouped is None and _speedups is not None:
            self._grouped = _speedups.by_group(self.hits, self.index.term_groups)
        elif self._grouped is None:
            grouped: dict[int, dict[int, list[tuple[int, int]]]] = {}
            term_groups = self.index.term_groups
            for tid, spans in self.hits.items():
                for key in term_groups[tid]:
                    if key in grouped:
                        grouped[key][tid] = spans
                    else:
                        grouped[key] = {tid: spans}
            self._grouped = grouped
        return self._grouped

    @property
    def sentence_starts(self) -> list[int]:
        if self._starts_of_sentences is None:
            self._starts_of_sentences = [s for s, _ in self.sentences]
        return self._starts_of_sentences

    @property
    def sentences(self) -> list[tuple[int, int]]:
        if self._sentences is None:
            self._sentences = split_sentences(self.p.shown)
        return self._sentences

    def single_groups(self) -> list[tuple[tuple[str, ...], int, int] | None]:
        """Per slot of ``index.slot``: (terms, best sentence, focus) or None (C only)."""
        assert _speedups is not None
        index = self.index
        if not any(index.slots_of[t] for t in self.hits):
            return [None] * len(index.slot)  # and no sentences cut for nothing
        return _speedups.single_groups(
            self.hits,
            index.slots_of,
            len(index.slot),
            index.written,
            index.shown,
            self.sentence_starts,
            self.size,
        )

    def occurrences(self, g: Group) -> dict[int, list[tuple[int, int]]]:
        """Term id -> spans of ``g``'s terms, minus those cancelled by ``unless`` context."""
        key = id(g)
        if key in self._groups:
            return self._groups[key]
        ids = self.index.ids
        if key in self.index.groups:
            out = self._by_group().get(key, {})
        else:  # a group built outside the indexed rules
            out = {ids[t]: self.hits[ids[t]] for t in g.terms if ids[t] in self.hits}
        if g.unless and out:
            near = sorted(s for t in g.unless for s in self.hits.get(ids[t], ()))
            if near:
                out = {
                    tid: kept
                    for tid, spans in out.items()
                    if (kept := [s for s in spans if not self._near(s, near, g.window)])
                }
        self._groups[key] = out
        return out

    def _near(self, span: tuple[int, int], near: list[tuple[int, int]], window: int) -> bool:
        canon = self.p.canon
        k = bisect.bisect_left(near, span)
        for j in (k - 1, k, k + 1):
            if not 0 <= j < len(near) or near[j] == span:
                continue
            a, b = sorted((near[j], span))
            if b[0] - a[1] > _NEAR_CHARS:
                continue
            if b[0] < a[1] or len(_WORD.findall(canon, a[1], b[0])) < window:
                return True
        return False

    def starts(self, c: Condition) -> list[int]:
        """Sorted starts of the occurrences of ``c``'s positive terms (for windows)."""
        key = id(c)
        if key not in self._starts:
            found: set[int] = set()
            stack: list[Cond] = [*c.all, *c.any]
            while stack:
                x = stack.pop()
                if isinstance(x, Group):
                    for spans in self.occurrences(x).values():
                        found.update(s for s, _ in spans)
                else:
                    stack.extend((*x.all, *x.any))
            self._starts[key] = sorted(found)
        return self._starts[key]

    def window_end(self, start: int, words: int) -> int:
        end = start
        for n, m in enumerate(_WORD.finditer(self.p.canon, start), 1):
            end = m.end()
            if n >= words:
                break
        return end


def _eval(c: Cond, ctx: _Context, lo: int, hi: int) -> _Result | None:
    if isinstance(c, Group):
        occurrences = ctx.occurrences(c)
        if not occurrences:
            return None
        if lo <= 0 and hi >= ctx.size:
            # The whole article: every occurrence counts. The lists are shared,
            # never changed (_Result.add copies into lists of its own).
            return _Result(spans=dict(occurrences), score=c.weight or 0.0)
        res = None
        for tid, spans in occurrences.items():
            k1 = bisect.bisect_left(spans, (lo, -1))
            k2 = bisect.bisect_left(spans, (hi, -1))
            inside = [s for s in spans[k1:k2] if s[1] <= hi]
            if inside:
                if res is None:
                    res = _Result(score=c.weight or 0.0)
                res.spans[tid] = inside
        return res
    if c.field == "title":
        hi = min(hi, ctx.p.title_end)
    elif c.field == "text":
        lo = max(lo, ctx.p.title_end + 1)
    if lo >= hi:
        return None
    if c.within is None:
        return _eval_plain(c, ctx, lo, hi)
    if not _possible(c, ctx, lo, hi):
        return None  # cheap: not even the whole range has what a window needs
    starts = ctx.starts(c)
    k1, k2 = bisect.bisect_left(starts, lo), bisect.bisect_left(starts, hi)
    if c.within == "sentence":
        sentences = ctx.sentences
        begins = [s for s, _ in sentences]
        tried: set[int] = set()
        for s in starts[k1:k2]:
            k = bisect.bisect_right(begins, s) - 1
            if k < 0 or k in tried:
                continue
            tried.add(k)
            a, b = sentences[k]
            res = _eval_plain(c, ctx, max(a, lo), min(b, hi))
            if res is not None:
                return res
        return None
    assert isinstance(c.within, int)
    for s in starts[k1:k2]:
        res = _eval_plain(c, ctx, s, min(hi, ctx.window_end(s, c.within)))
        if res is not None:
            return res
    return None


def _possible(c: Cond, ctx: _Context, lo: int, hi: int) -> bool:
    """Whether the positive parts of ``c`` (ignoring ``none`` and windows) hold in the range."""
    if isinstance(c, Group):
        return _eval(c, ctx, lo, hi) is not None
    if not all(_possible(x, ctx, lo, hi) for x in c.all):
        return False
    return not c.any or sum(_possible(x, ctx, lo, hi) for x in c.any) >= c.at_least


def _eval_plain(c: Condition, ctx: _Context, lo: int, hi: int) -> _Result | None:
    out = _Result(score=c.weight or 0.0, categories=[c.category] if c.category else [])
    for sub in c.all:
        res = _eval(sub, ctx, lo, hi)
        if res is None:
            return None
        out.add(res)
    if c.any:
        found = 0
        for sub in c.any:
            res = _eval(sub, ctx, lo, hi)
            if res is not None:
                found += 1
                out.add(res)
        if found < c.at_least:
            return None
    if any(_eval(sub, ctx, lo, hi) is not None for sub in c.none):
        return None
    return out


def _language_ok(rule: Rule, language: str | None) -> bool:
    if not rule.languages or not language:
        return True
    return language.split("-")[0].split("_")[0].lower() in rule.languages


def _weighted(rule: Rule) -> bool:
    return rule.threshold is not None or any(_has_weight(c) for c in (*rule.all, *rule.any))


def _has_weight(c: Cond) -> bool:
    if c.weight is not None:
        return True
    return isinstance(c, Condition) and any(_has_weight(x) for x in (*c.all, *c.any))


def _rule_result(rule: Rule, ctx: _Context, language: str | None) -> _Result | None:
    if not _language_ok(rule, language):
        return None
    group = ctx.index.single.get(id(rule))
    if group is not None:
        # What _eval would find, without its general machinery: the group's
        # occurrences over the whole article (a dict of its own, the lists shared).
        occurrences = ctx.occurrences(group)
        return _Result(spans=dict(occurrences), score=1.0) if occurrences else None
    required = ctx.index.required.get(id(rule))
    if required is not None:
        found = ctx.hits.keys()
        # Cheap: a set of terms of which none occurred rules the rule out.
        if any(terms.isdisjoint(found) for terms in required):
            return None
    res = _eval(rule.condition, ctx, 0, ctx.size)
    if res is None:
        return None
    if not _weighted(rule):
        res.score = 1.0
    elif rule.threshold is not None and res.score < rule.threshold:
        return None
    return res


def _to_match(rule: Rule, res: _Result, ctx: _Context) -> Match:
    written, shown = ctx.index.written, ctx.index.shown
    spans = res.spans
    # The first occurrence, then as written; the position keeps ties in insertion order.
    if _speedups is not None:
        terms = _speedups.terms_in_order(spans, written, shown)
    else:
        keyed = sorted(
            [(found[0][0], written[t], i, shown[t]) for i, (t, found) in enumerate(spans.items())]
        )
        terms = tuple(dict.fromkeys([k[3] for k in keyed]))
    if res.categories:
        categories = list(dict.fromkeys(res.categories))
        category: str | None = categories[0]
        tags = tuple(dict.fromkeys((*rule.tags, *categories)))
    else:  # the common case, spared the work
        category = rule.category
        tags = tuple(dict.fromkeys(rule.tags))
    return Match(
        rule=rule.name,
        terms=terms,
        # The evidence does not depend on the order of the terms.
        sentence=_evidence(ctx.p.shown, ctx.sentences, ctx.sentence_starts, list(spans.values())),
        channels=rule.channels,
        category=category,
        score=round(res.score, 6),
        tags=tags,
        alert=rule.alert,
    )


def match_article(article: Article, ruleset: RuleSet) -> list[Match]:
    """Return one :class:`Match` per rule of ``ruleset`` that ``article`` satisfies.

    The title and text are matched together (only the first
    :data:`MAX_TEXT_CHARS`). Each match lists the rule's matched terms as the
    rule wrote them (``ICE``, ``Mitarbeiter*``; no ``=`` marker), in the order
    they first occur, and the sentence holding the most of them; its category
    is the first matching sub-condition's ``category`` (else the rule's), its
    tags the rule's plus every matching category.

    >>> from monitor.rules import rules_from_text
    >>> rs = rules_from_text("rules: [{name: r, all: [[Salesforce], [Mitarbeiter*]]}]")
    >>> m = match_article(Article(url=None, title="", text="Salesforce-Mitarbeiterinnen."), rs)
    >>> m[0].terms
    ('Salesforce', 'Mitarbeiter*')
    """
    p = prepare(article.title, article.text)
    index = ruleset.term_index
    hits = find_terms(p, index)
    if not hits:
        return []
    ctx = _Context(p, index, hits)
    out = []
    # The C accelerator decides every single-group rule in one call.
    slot = index.slot if _speedups is not None else {}
    singles = ctx.single_groups() if slot else []
    for rule in ruleset.rules:
        k = slot.get(id(rule))
        if k is None:
            res = _rule_result(rule, ctx, article.language)
            if res is not None:
                out.append(_to_match(rule, res, ctx))
        elif (found := singles[k]) is not None and _language_ok(rule, article.language):
            out.append(_single_match(rule, found, ctx))
    return out


def _single_match(rule: Rule, found: tuple[tuple[str, ...], int, int], ctx: _Context) -> Match:
    """:func:`_to_match` for a single-group rule, from what ``single_groups`` found."""
    terms, best, focus = found
    return Match(
        rule=rule.name,
        terms=terms,
        sentence=_trim(ctx.p.shown, *ctx.sentences[best], focus) if best >= 0 else "",
        channels=rule.channels,
        category=rule.category,
        score=1.0,
        tags=tuple(dict.fromkeys(rule.tags)),
        alert=rule.alert,
    )


@dataclass(frozen=True)
class Explanation:
    """Why a rule matched an article, or what it missed."""

    rule: str
    #: The match, if the rule matched.
    match: Match | None
    #: For a rule that did not match: what was missing or what vetoed it.
    missing: tuple[str, ...] = ()
    #: For a rule that did not match: the terms it did find.
    found: tuple[str, ...] = ()

    @property
    def close(self) -> bool:
        """Did not match, but found something and lacked at most two things."""
        return self.match is None and bool(self.found) and len(self.missing) <= 2


def explain_article(article: Article, ruleset: RuleSet) -> list[Explanation]:
    """One :class:`Explanation` per rule: the match, or what was missing."""
    p = prepare(article.title, article.text)
    index = ruleset.term_index
    hits = find_terms(p, index)
    ctx = _Context(p, index, hits)
    out = []
    for rule in ruleset.rules:
        res = _rule_result(rule, ctx, article.language)
        if res is not None:
            out.append(Explanation(rule.name, _to_match(rule, res, ctx)))
            continue
        missing: list[str] = []
        if not _language_ok(rule, article.language):
            missing.append(f"language {article.language} is not one of {', '.join(rule.languages)}")
        whole = (0, len(p.shown))
        for c in rule.all:
            if _eval(c, ctx, *whole) is None:
                missing.append(f"all: {c.describe()}")
        if rule.any:
            got = sum(_eval(c, ctx, *whole) is not None for c in rule.any)
            if got < rule.at_least:
                shown = "; ".join(c.describe() for c in rule.any[:6])
                missing.append(f"any: {got} of {rule.at_least} needed ({shown})")
        for c in rule.none:
            if _eval(c, ctx, *whole) is not None:
                missing.append(f"none: vetoed by {c.describe()}")
        if not missing and rule.within is not None:
            missing.append(f"not all within {rule.within}")
        if not missing and rule.field is not None:
            missing.append(f"not all in the {rule.field}")
        if not missing and rule.threshold is not None:
            missing.append(f"score below the threshold {rule.threshold:g}")
        found = tuple(
            dict.fromkeys(
                index.terms[index.ids[t]].shown for t in rule.terms() if index.ids[t] in hits
            )
        )
        out.append(Explanation(rule.name, None, tuple(missing), found))
    return out


# A sentence ends at . ! ? or … (plus closing quotes/brackets) before
# whitespace, or at a line break (paragraphs, and the title line); neither
# when a lower-case word follows.
#
# Written to start with one character class, which lets `re` skip ahead in C
# to the next candidate; the look-ahead captures the following word.
_END = re.compile(
    "[.!?\u2026\n](?:(?<=\n)|(?<!\n)[.!?\u2026]*[\"'\u00bb\u00ab\u201c\u201d\u2018\u2019)\\]]*(?=\\s))"
    "(?=\\s*(\\S*))"
)
# The word before a period, read backwards (only its first few letters matter).
_WORD_BEFORE = re.compile(r"\w{0,7}")
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


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Cut ``text`` into sentences: a list of (start, end) offsets, whitespace trimmed.

    Handles English and German: no cut after common abbreviations (``Dr.``,
    ``bzw.``), initials and ``U.S.``, German ordinals before a month
    (``am 3. Oktober``), or before a lower-case word.
    """
    if _speedups is not None:
        return _speedups.split_sentences(text, _ABBREVIATIONS, _MONTHS)
    return _split_sentences(text)


def _split_sentences(text: str) -> list[tuple[int, int]]:
    """:func:`split_sentences` in Python (``monitor/_speedups.c`` has it in C)."""
    cuts = [0]
    for m in _END.finditer(text):
        following = m.group(1)
        if following[:1].islower():
            continue
        a = m.start()
        # Only a short word before a single period may keep the sentence going:
        # six letters before it settle the common case without a closer look.
        if (
            text[a] == "."
            and text[a + 1 : a + 2] != "."
            and not (a >= 6 and text[a - 6 : a].isalpha())
        ):
            word = _WORD_BEFORE.match(text[max(0, a - 7) : a][::-1]).group()[::-1]  # type: ignore[union-attr]
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
    text: str,
    sentences: list[tuple[int, int]],
    starts: list[int],
    occurrences: list[list[tuple[int, int]]],
) -> str:
    """The sentence holding the most distinct matched terms (earliest on a tie), trimmed.

    ``starts`` are the sentences' start offsets. An occurrence belongs to the
    last sentence starting at or before it.
    """
    found = (
        _best_sentence(starts, occurrences, len(text))
        if _speedups is None
        else _speedups.best_sentence(starts, occurrences, len(text))
    )
    if found is None:
        return ""
    best, focus = found
    return _trim(text, *sentences[best], focus)


def _best_sentence(
    starts: list[int], occurrences: list[list[tuple[int, int]]], size: int
) -> tuple[int, int] | None:
    """(sentence number, first occurrence start in it) for :func:`_evidence`; None if none.

    ``size`` is the text's length. :func:`monitor._speedups.best_sentence` does
    the same in C.
    """
    where = bisect.bisect_right
    # Sentence number + 1 -> how many distinct terms occur in it (0: before the first).
    per_sentence = Counter(
        chain.from_iterable(
            {where(starts, start) for start, _end in spans} for spans in occurrences
        )
    )
    per_sentence.pop(0, None)
    if not per_sentence:
        return None
    most = max(per_sentence.values())
    best = min(k for k, n in per_sentence.items() if n == most) - 1
    s = starts[best]
    after = starts[best + 1] if best + 1 < len(starts) else size + 1
    focus = min(start for spans in occurrences for start, _end in spans if s <= start < after)
    return best, focus


def _trim(text: str, start: int, end: int, focus: int) -> str:
    """``text[start:end]``, whitespace collapsed, cut to ~SENTENCE_CHARS around ``focus``.

    ``text`` is :attr:`Prepared.shown`, whose whitespace runs are one space or
    one line break each already (:func:`prepare`): collapsing them is turning
    line breaks into spaces, and keeps the length.
    """
    if end - start <= SENTENCE_CHARS:
        return text[start:end].replace("\n", " ")
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
    body = text[lo:hi].replace("\n", " ").strip()
    return ("… " if lo > start else "") + body + (" …" if hi < end else "")
