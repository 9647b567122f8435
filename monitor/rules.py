"""YAML -> validated, compiled :class:`RuleSet`; every error reported at once.

A rules directory holds rule files and entity files (``rules/README.md`` and
the header of ``rules/tech-worker-activism.yaml`` document every key)::

    entities:                    # reusable named things, used as @name anywhere
      microsoft:
        kind: company
        aliases: [Microsoft, =MSFT]
        includes: [github]       # subsidiaries and products count as Microsoft
      github: [GitHub]
      ice:
        aliases: [=ICE, Immigration and Customs Enforcement]
        unless_near: [Zug, Bahn, train]   # ICE near "Zug" is the German train
        window: 6
    terms:                       # named term lists, local to the file, used as $name
      workers: [employees, Mitarbeiter*]
    rules:
      - name: tech-worker-activism
        category: government-contracts
        channels: [inbox]
        mode: immediate          # or digest, with a schedule such as "daily 08:00"
        all:                     # every condition must match
          - "@microsoft"
          - $workers
          - any: [open letter, petition, {regex: "walk(ed|s)? ?out"}]
            within: sentence     # ... in the same sentence (or: within: 12 words)
        any: ["@ice", Pentagon]  # at least `at_least` (default 1) must match
        none: [[ice hockey]]     # none may match

A file holds ``entities``, ``terms`` and ``rules`` in any combination; by
convention entity files live in ``rules/entities/`` and hold only
``entities``. Entities are shared by every file loaded together; named term
lists belong to their file. Loading a single file also loads the
``entities/`` directory beside it, so a rule file can be checked alone.

Terms: a plain string is case-insensitive; a leading ``=`` makes it
case-sensitive (``=ICE``); a trailing ``*`` makes it a prefix (``Mitarbeiter*``
also matches ``Mitarbeiterinnen``); ``{term: ..., case_sensitive: true,
prefix: true}`` says the same at length; ``{regex: ...}`` is an RE2 pattern
(linear time; backreferences and lookaround are load errors, FAULTS C15/C16).
Case-insensitive terms also match the ae/oe/ue/ss spellings of ä/ö/ü/ß and
the other way round. Terms match whole words: see :func:`split_words`.

Loading never runs code from the file: the YAML is only *composed* into nodes
(no constructor runs, so ``!!python/object`` cannot instantiate anything,
FAULTS C17), every tag outside the YAML core schema is rejected, anchors and
aliases are rejected (no alias bombs, C18) and files are capped at
:data:`MAX_FILE_BYTES` (C18). Loading either returns a complete
:class:`RuleSet` or raises one :class:`~monitor.exceptions.RuleError` listing
every problem; it never returns part of the rules.
"""

from __future__ import annotations

import re
import threading
import unicodedata
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from dataclasses import field as _field
from dataclasses import replace as _replace
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Any

import ahocorasick
import re2

try:  # optional: several times faster than pyahocorasick where it installs
    import hyperscan
except ImportError:  # pragma: no cover - depends on the environment
    hyperscan = None  # type: ignore[assignment]
try:  # optional: the C accelerator, built by `pip install` where a compiler is
    from monitor import _speedups
except ImportError:  # pragma: no cover - depends on the build
    _speedups = None  # type: ignore[assignment]
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from monitor.digest import zone
from monitor.exceptions import RuleError

__all__ = [
    "AVAILABLE_ENGINES",
    "DEFAULT_ENGINE",
    "ENGINES",
    "MAX_FILE_BYTES",
    "Condition",
    "Group",
    "KeyInfo",
    "Rule",
    "RuleSet",
    "Term",
    "TermIndex",
    "fold",
    "fold_cased",
    "load_rules",
    "lower_text",
    "rules_from_text",
    "split_words",
]

#: Largest rules file we read (FAULTS C18); real rule files are a few KB.
MAX_FILE_BYTES = 1_000_000
#: Most spellings (ae/ä, oe/ö, ue/ü, ss/ß) one term may expand to.
MAX_SPELLINGS = 64
#: Default number of words an ``unless_near`` exclusion looks either side.
DEFAULT_WINDOW = 5
SEVERITIES = ("low", "medium", "high", "critical")
#: Multi-pattern engines a :class:`TermIndex` can compile to; all find the same.
ENGINES = ("wordtrie", "hyperscan", "pyahocorasick")
#: The engines this installation can run, best first: wordtrie needs the C
#: accelerator, hyperscan its optional package; pyahocorasick is always there.
AVAILABLE_ENGINES = tuple(
    e
    for e, there in zip(ENGINES, (_speedups is not None, hyperscan is not None, True), strict=True)
    if there
)
DEFAULT_ENGINE = AVAILABLE_ENGINES[0]
MODES = ("immediate", "digest")
FIELDS = ("title", "text")

# A word is a run of letters and digits (any script, so umlauts and ß count);
# everything else, hyphens and apostrophes included, separates words. That is
# what lets "Salesforce-Mitarbeiter" match both Salesforce and Mitarbeiter.
_WORD = re.compile(r"[^\W_]+")
_SPACE = re.compile(r"\s+")
# Typographic dashes and apostrophes are written either way in news text.
_GAP_CHARS = str.maketrans(
    {
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2212": "-",
        "\u00ad": "",
        "\u2019": "'",
        "\u2018": "'",
        "\u02bc": "'",
    }
)
_DIGRAPHS = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"}
_CASED_DIGRAPHS = {**_DIGRAPHS, "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"}
_UMLAUT_OF = {v: k for k, v in _CASED_DIGRAPHS.items()}
_DIGRAPH_FOLD = str.maketrans(_DIGRAPHS)
_CASED_FOLD = str.maketrans(_CASED_DIGRAPHS)
# A prefix ending in one of these may continue with the umlaut it starts.
_TAIL_UMLAUT = {"a": "ä", "o": "ö", "u": "ü", "s": "ß", "A": "Ä", "O": "Ö", "U": "Ü"}
#: Deepest [ / { nesting we hand to the parser: ruamel.yaml recurses per level
#: and takes seconds to fail on a few thousand (C18); rules need three or four.
MAX_NESTING = 64
_RULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_LIST_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")
_LANGUAGE = re.compile(r"[a-z]{2,3}")
_SCHEDULE = re.compile(
    r"hourly|daily(?: (?P<dh>\d\d):(?P<dm>\d\d))?"
    r"|weekly(?: (?:mon|tue|wed|thu|fri|sat|sun))?(?: (?P<wh>\d\d):(?P<wm>\d\d))?"
)

_CORE = "tag:yaml.org,2002:"
# "value" (a plain `=`) and "merge" (`<<`) are plain strings to us.
_SCALAR_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "timestamp", "value", "merge")}
_NULL = _CORE + "null"
_SEQ = _CORE + "seq"
_MAP = _CORE + "map"


def split_words(text: str) -> Iterator[re.Match[str]]:
    """Yield the words of ``text`` (NFC-normalised by the caller) as matches.

    The one definition of a word, shared by term compilation and matching so a
    term is cut into words exactly as the article is.
    """
    return _WORD.finditer(text)


def normalize_gap(gap: str) -> str:
    """The text between two words, reduced to what a multi-word term compares."""
    return _SPACE.sub(" ", gap.translate(_GAP_CHARS))


def lower_text(text: str) -> str:
    """``text.lower()``, keeping any character whose lower case is longer (İ) as it is.

    Offsets into the result are offsets into ``text``.
    """
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def fold(text: str) -> str:
    """What case-insensitive terms compare: lower case, ä/ö/ü/ß as ae/oe/ue/ss."""
    return lower_text(text).translate(_DIGRAPH_FOLD)


def fold_cased(text: str) -> str:
    """What case-sensitive terms compare: the text, with ä/Ä ... ß as ae/Ae ... ss."""
    return text.translate(_CASED_FOLD)


def _spellings(folded: str, limit: int) -> list[str] | None:
    """Every string that folds to ``folded`` (ae -> ae or ä, ...); None past ``limit``."""
    out = [""]
    i = 0
    while i < len(folded):
        pair = folded[i : i + 2]
        if pair in _UMLAUT_OF:
            # Either the two letters stand, or they are the umlaut; both paths
            # continue, so branch on every (possibly overlapping) reading.
            rest = _spellings(folded[i + 2 :], limit)
            rest1 = _spellings(folded[i + 1 :], limit)
            if rest is None or rest1 is None:
                return None
            tails = [_UMLAUT_OF[pair] + r for r in rest] + [folded[i] + r for r in rest1]
            out = [o + t for o in out for t in tails]
            return out if len(out) <= limit else None
        out = [o + folded[i] for o in out]
        i += 1
    return out


def _flow_depth(text: str) -> int:
    """The deepest bracket nesting in ``text``, counting quoted brackets too (a safe overcount)."""
    depth = deepest = 0
    for m in re.finditer(r"[\[\]{}]", text):
        depth = depth + 1 if m.group() in "[{" else max(0, depth - 1)
        deepest = max(deepest, depth)
    return deepest


@dataclass(frozen=True)
class Term:
    """One search term: a word, a phrase of words, or an RE2 pattern."""

    #: The term as written, without the ``=`` and ``*`` markers (the pattern for a regex).
    text: str
    #: Match the exact letter case (``ICE`` but not ``ice`` or ``Ice``).
    case_sensitive: bool = False
    #: The last word may be longer (``Mitarbeiter*`` matches ``Mitarbeiterinnen``).
    prefix: bool = False
    #: ``text`` is an RE2 regular expression, matched as written (no word boundaries added).
    regex: bool = False

    def __post_init__(self) -> None:
        if not self.regex and not self.words:
            raise ValueError(f"term {self.text!r} has no letters or digits")

    @cached_property
    def words(self) -> tuple[str, ...]:
        """The term's words (NFC), compared to the article's words one by one."""
        return tuple(m.group() for m in split_words(unicodedata.normalize("NFC", self.text)))

    @cached_property
    def gaps(self) -> tuple[str, ...]:
        """What stands between word ``i`` and ``i + 1``, normalised."""
        text = unicodedata.normalize("NFC", self.text)
        spans = [m.span() for m in split_words(text)]
        return tuple(normalize_gap(text[a[1] : b[0]]) for a, b in pairwise(spans))

    @cached_property
    def key(self) -> str:
        """The words and gaps as one string, as the matcher compares it (case kept)."""
        out = [self.words[0]]
        for gap, word in zip(self.gaps, self.words[1:], strict=True):
            out += [gap, word]
        return "".join(out)

    @cached_property
    def folded(self) -> tuple[str, ...]:
        """The words as compared: folded (see :func:`fold` and :func:`fold_cased`)."""
        if self.case_sensitive:
            return tuple(fold_cased(w) for w in self.words)
        return tuple(fold(w) for w in self.words)

    def spellings(self) -> list[str] | None:
        """Every spelling of the term (ae or ä, ...); None past MAX_SPELLINGS."""
        base = fold_cased(self.key) if self.case_sensitive else fold(self.key)
        found = _spellings(base, MAX_SPELLINGS)
        if found is not None and self.prefix:
            # "Mu*" also starts "Müller" (ue): the umlaut may begin right after the prefix.
            found += [s[:-1] + _TAIL_UMLAUT[s[-1]] for s in found if s[-1] in _TAIL_UMLAUT]
        return found

    @property
    def written(self) -> str:
        """The term in the short form a rule file uses (``=ICE``, ``Mitarbeiter*``)."""
        if self.regex:
            return f"/{self.text}/"
        return ("=" if self.case_sensitive else "") + self.text + ("*" if self.prefix else "")

    @property
    def shown(self) -> str:
        """The term as shown in a match: as written, without the ``=`` marker."""
        return f"/{self.text}/" if self.regex else self.text + ("*" if self.prefix else "")

    def __str__(self) -> str:
        return self.written


@dataclass(frozen=True)
class Group:
    """A set of alternatives: the group matches when any of its terms does.

    An occurrence of a term counts only if no ``unless`` term is within
    ``window`` words of it (ICE near "Zug" is the German train).
    """

    terms: tuple[Term, ...]
    #: Context that cancels an occurrence of one of ``terms``.
    unless: tuple[Term, ...] = ()
    #: Words either side that ``unless`` looks at.
    window: int = DEFAULT_WINDOW
    #: Added to the rule's score when the group matches.
    weight: float | None = None
    #: How the group is shown in explanations (``$workers``, ``@microsoft``).
    label: str = _field(default="", compare=False)

    def describe(self) -> str:
        """A short name for explanations."""
        if self.label:
            return self.label
        shown = ", ".join(t.written for t in self.terms[:3])
        return f"[{shown}{', ...' if len(self.terms) > 3 else ''}]"


@dataclass(frozen=True)
class Condition:
    """``all`` / ``any`` (at least ``at_least``) / ``none``, optionally scoped.

    ``field`` limits it to the title or the text; ``within`` to one sentence
    (``"sentence"``) or a run of N words.
    """

    all: tuple[Cond, ...] = ()
    any: tuple[Cond, ...] = ()
    none: tuple[Cond, ...] = ()
    at_least: int = 1
    field: str | None = None
    within: int | str | None = None
    #: Added to the rule's score when the condition matches.
    weight: float | None = None
    #: When this condition matches, the match gets this category (the first one wins).
    category: str | None = None
    #: ``file:line`` of the condition.
    source: str = _field(default="", compare=False)

    def describe(self) -> str:
        """A short name for explanations."""
        return f"{{condition at {self.source}}}" + (f" ({self.category})" if self.category else "")


Cond = Group | Condition


@dataclass(frozen=True)
class Rule:
    """A named rule: ``all`` conditions, at least ``at_least`` ``any`` ones, no ``none`` one."""

    name: str
    description: str
    #: Every condition must match.
    all: tuple[Cond, ...]
    #: If non-empty, at least ``at_least`` of them must match.
    any: tuple[Cond, ...]
    #: No condition may match.
    none: tuple[Cond, ...]
    #: Channel names to alert; ``()`` means every configured channel.
    channels: tuple[str, ...] = ()
    #: ``path:line`` where the rule was defined.
    source: str = "<code>"
    at_least: int = 1
    #: ``title`` or ``text``: only look there.
    field: str | None = None
    #: ``"sentence"`` or a number of words the whole rule must fit in.
    within: int | str | None = None
    #: The match's category unless a matching sub-condition names one.
    category: str | None = None
    tags: tuple[str, ...] = ()
    severity: str = "medium"
    #: ISO 639-1 codes; empty means any. Articles of unknown language are matched.
    languages: tuple[str, ...] = ()
    #: ``immediate`` or ``digest`` (then ``schedule`` says when).
    mode: str = "immediate"
    #: ``hourly``, ``daily HH:MM`` or ``weekly [mon..sun] [HH:MM]``, for digests.
    schedule: str | None = None
    #: The IANA time zone the schedule is read in (``Europe/Berlin``); None is UTC.
    timezone: str | None = None
    #: Alert again on later reports of a story that already alerted (marked as updates).
    updates: bool = False
    #: False: a tag-only rule; its hits are recorded but do not alert by default.
    alert: bool = True
    #: With weights: the least score that counts as a match.
    threshold: float | None = None

    @cached_property
    def condition(self) -> Condition:
        """The rule's logic as one condition (one object, so matchers may cache by it)."""
        return Condition(
            all=self.all,
            any=self.any,
            none=self.none,
            at_least=self.at_least,
            field=self.field,
            within=self.within,
            source=self.source,
        )

    def terms(self) -> Iterator[Term]:
        """Every term the rule uses, ``none`` and ``unless`` terms included."""
        stack: list[Cond] = [*self.all, *self.any, *self.none]
        while stack:
            c = stack.pop()
            if isinstance(c, Group):
                yield from c.terms
                yield from c.unless
            else:
                stack.extend((*c.all, *c.any, *c.none))


@dataclass(frozen=True)
class RuleSet:
    """The validated rules of one or more files, ready for :func:`monitor.match.match_article`."""

    rules: tuple[Rule, ...]
    #: The files the rules came from, in load order.
    files: tuple[str, ...] = ()
    #: Entity names defined by the files.
    entities: tuple[str, ...] = _field(default=())

    def channel_names(self) -> set[str]:
        """Every channel name some rule alerts, for the config loader to check."""
        return {c for rule in self.rules for c in rule.channels}

    def rule(self, name: str) -> Rule | None:
        """The rule called ``name``, if any."""
        return next((r for r in self.rules if r.name == name), None)

    @cached_property
    def term_index(self) -> TermIndex:
        """The compiled automaton the matcher uses (built once)."""
        return TermIndex.build(self.rules)


#: Per key of the automaton: its length in characters and the
#: ``(term id, exact text or None, prefix)`` of every term spelled that way.
KeyInfo = tuple[int, tuple[tuple[int, str | None, bool], ...]]


@dataclass(frozen=True)
class TermIndex:
    """Every distinct term compiled into one multi-pattern automaton (plus RE2 patterns).

    The automaton runs over the lower-cased text and reports every occurrence
    of every key (each spelling of each term, lower-cased), overlapping ones
    too; :func:`monitor.match.find_terms` then checks word boundaries, and the
    exact case for case-sensitive terms. Three engines do the same job:
    wordtrie (the C accelerator's trie, walked only from word starts: a term
    must begin where a word begins, so it skips what the others report and
    the filter drops; fastest, above all for large packs), hyperscan
    (optional, SIMD, scans UTF-8 bytes) and pyahocorasick (always there).
    """

    terms: tuple[Term, ...]
    #: Each term's position in ``terms``.
    ids: dict[Term, int]
    #: pyahocorasick automaton (engine ``pyahocorasick``) of the keys; a found
    #: key's value is its id, which indexes ``key_info``.
    automaton: Any
    regexes: tuple[tuple[int, Any], ...]
    #: ``id(group)`` -> the ids of its terms, for every group of the rules indexed.
    groups: dict[int, frozenset[int]] = _field(default_factory=dict)
    #: Terms with more spellings than MAX_SPELLINGS (the loader refuses them;
    #: only rule sets built in code have them): matched word by word instead.
    slow: tuple[int, ...] = ()
    #: Term id -> ``id(group)`` of every indexed group that holds the term.
    term_groups: dict[int, tuple[int, ...]] = _field(default_factory=dict)
    #: ``id(rule)`` -> sets of term ids: the rule can only match an article in
    #: which some term of each set occurs (a cheap test before the full logic).
    required: dict[int, tuple[frozenset[int], ...]] = _field(default_factory=dict)
    #: ``id(rule)`` -> its one group, for a rule that is nothing but ``any: [group]``
    #: (no all/none, field, within, threshold or weight): it matches wherever the
    #: group occurs, so matching skips the general evaluation.
    single: dict[int, Group] = _field(default_factory=dict)
    #: ``id(rule)`` -> its number among the single-group rules whose group has no
    #: ``unless`` context, and per term id the numbers of those whose group holds
    #: it: what :func:`monitor._speedups.single_groups` decides them all from at once.
    slot: dict[int, int] = _field(default_factory=dict)
    slots_of: tuple[tuple[int, ...], ...] = ()
    #: Each term as a rule file writes it and as a match shows it (by term id).
    written: tuple[str, ...] = ()
    shown: tuple[str, ...] = ()
    #: ``hyperscan`` or ``pyahocorasick``: which engine runs the keys.
    engine: str = "pyahocorasick"
    #: hyperscan database (engine ``hyperscan``) of the UTF-8 keys; a match's id
    #: indexes ``key_info``.
    database: Any = None
    key_info: tuple[KeyInfo, ...] = ()
    #: ``monitor._speedups.WordTrie`` (engine ``wordtrie``) of the keys; a found
    #: key's id indexes ``key_info``.
    trie: Any = None
    #: Per-thread hyperscan scratch space: one scratch cannot serve two scans at once.
    _local: threading.local = _field(default_factory=threading.local, compare=False, repr=False)

    def scratch(self) -> Any:
        """This thread's hyperscan scratch space for ``database``."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self.database)
        return scratch

    @classmethod
    def build(cls, rules: Sequence[Rule], engine: str | None = None) -> TermIndex:
        """Index every distinct term of ``rules``."""
        ids: dict[Term, int] = {}
        for rule in rules:
            for term in rule.terms():
                ids.setdefault(term, len(ids))
        index = cls.from_terms(tuple(ids), engine)
        stack: list[Cond] = [c for r in rules for c in (*r.all, *r.any, *r.none)]
        while stack:
            c = stack.pop()
            if isinstance(c, Group):
                if id(c) not in index.groups:
                    index.groups[id(c)] = members = frozenset(ids[t] for t in c.terms)
                    for tid in members:
                        index.term_groups[tid] = (*index.term_groups.get(tid, ()), id(c))
            else:
                stack.extend((*c.all, *c.any, *c.none))
        for tid in range(len(ids)):
            index.term_groups.setdefault(tid, ())
        slots_of: list[list[int]] = [[] for _ in ids]
        for rule in rules:
            index.required[id(rule)] = tuple(_required(rule.condition, ids))
            group = _single_group(rule)
            if group is not None:
                index.single[id(rule)] = group
                if not group.unless and id(rule) not in index.slot:
                    index.slot[id(rule)] = slot = len(index.slot)
                    for tid in index.groups[id(group)]:
                        slots_of[tid].append(slot)
        return _replace(index, slots_of=tuple(map(tuple, slots_of)))

    @classmethod
    def from_terms(cls, terms: Sequence[Term], engine: str | None = None) -> TermIndex:
        """Compile ``terms`` (distinct) in the given order, with ``engine`` (default: the best)."""
        engine = engine or DEFAULT_ENGINE
        if engine not in AVAILABLE_ENGINES:
            raise ValueError(f"matching engine {engine!r} is not available")
        keys: dict[str, list[tuple[int, str | None, bool]]] = {}
        regexes = []
        slow = []
        for i, term in enumerate(terms):
            if term.regex:
                regexes.append((i, _compile_regex(term.text, term.case_sensitive)))
                continue
            spellings = term.spellings()
            if spellings is None:
                slow.append(i)
            for spelling in spellings or ():
                exact = spelling if term.case_sensitive else None
                keys.setdefault(lower_text(spelling), []).append((i, exact, term.prefix))
        key_info = tuple((len(key), tuple(values)) for key, values in keys.items())
        automaton = database = trie = None
        if keys and engine == "wordtrie":
            trie = _speedups.WordTrie(tuple(keys), key_info)
        elif keys and engine == "hyperscan":
            database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            database.compile(
                expressions=[key.encode("utf-8", "surrogatepass") for key in keys],
                ids=list(range(len(keys))),
                elements=len(keys),
                flags=[0] * len(keys),
                literal=True,
            )
        elif keys:
            automaton = ahocorasick.Automaton()
            for k, key in enumerate(keys):
                automaton.add_word(key, k)
            automaton.make_automaton()
        return cls(
            terms=tuple(terms),
            ids={t: i for i, t in enumerate(terms)},
            automaton=automaton,
            regexes=tuple(regexes),
            slow=tuple(slow),
            written=tuple(t.written for t in terms),
            shown=tuple(t.shown for t in terms),
            engine=engine,
            database=database,
            key_info=key_info,
            trie=trie,
        )


def _positive(c: Cond, ids: dict[Term, int]) -> set[int]:
    """Ids of the terms that can make ``c`` match (``none`` and ``unless`` left out)."""
    if isinstance(c, Group):
        return {ids[t] for t in c.terms}
    return {i for x in (*c.all, *c.any) for i in _positive(x, ids)}


def _single_group(rule: Rule) -> Group | None:
    """The rule's one group if the rule is nothing but ``any: [group]``, else None."""
    group = rule.any[0] if len(rule.any) == 1 else None
    if (
        isinstance(group, Group)
        and not rule.all
        and not rule.none
        and rule.at_least == 1
        and rule.field is None
        and rule.within is None
        and rule.threshold is None
        and group.weight is None
    ):
        return group
    return None


def _required(c: Cond, ids: dict[Term, int]) -> list[frozenset[int]]:
    """Sets of term ids of which ``c`` needs at least one each (a necessary condition).

    A group needs one of its terms; ``all`` needs what each part needs; ``any``
    needs a term of some part. Fields, windows, ``none`` and ``unless`` only
    take matches away, so they add nothing here.
    """
    if isinstance(c, Group):
        return [frozenset(ids[t] for t in c.terms)]
    out = [terms for x in c.all for terms in _required(x, ids)]
    if c.any and c.at_least >= 1:
        parts = [_positive(x, ids) for x in c.any]
        # A part with no terms at all (only `none`) could match on nothing.
        if all(parts):
            out.append(frozenset().union(*parts))
    return out


def _compile_regex(pattern: str, case_sensitive: bool) -> Any:
    """Compile with RE2; raises ``re2.error`` for what RE2 cannot run in linear time."""
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.log_errors = False
    return re2.compile(pattern, options)


# --------------------------------------------------------------------------
# Loading


def load_rules(source: str | Path | Sequence[str | Path]) -> RuleSet:
    """Load and validate rules from a file, a directory, or a list of both.

    A directory contributes every ``*.yaml`` / ``*.yml`` file below it, in
    sorted order; a file also brings the ``entities/`` directory beside it.
    Raises :class:`~monitor.exceptions.RuleError` listing every problem of
    every file, each as ``file:line: path: message``; never a partial set.

    >>> [r.name for r in load_rules("rules/").rules]  # doctest: +SKIP
    ['tech-worker-activism', ...]
    """
    sources = [source] if isinstance(source, str | Path) else list(source)
    label = ", ".join(str(s) for s in sources) or "<no rule files>"
    errors: list[str] = []
    files: list[Path] = []
    extra: list[Path] = []
    for src in sources:
        path = Path(src)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
            )
            if not found:
                errors.append(f"{path}:0: : no *.yaml or *.yml files in this directory")
            files.extend(found)
        elif path.is_file():
            files.append(path)
            beside = path.parent / "entities"
            if beside.is_dir() and path.parent.name != "entities":
                extra.extend(sorted(p for p in beside.glob("*") if p.suffix in (".yaml", ".yml")))
        else:
            errors.append(f"{path}:0: : no such file or directory")
    if not sources:
        errors.append(f"{label}:0: : no rule files given")
    known = {p.resolve() for p in files}
    for p in extra:
        if p.resolve() not in known:
            known.add(p.resolve())
            files.append(p)
    loader = _Loader()
    for path in files:
        name = str(path)
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                errors.append(
                    f"{name}:0: : file is {size} bytes, more than the {MAX_FILE_BYTES} allowed"
                )
                continue
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            errors.append(f"{name}:0: : not UTF-8 text ({e.reason} at byte {e.start})")
            continue
        except OSError as e:
            errors.append(f"{name}:0: : cannot read: {e.strerror or e}")
            continue
        loader.load_text(text, name)
    loader.finish()
    errors.extend(loader.errors)
    if errors:
        raise RuleError(label, errors)
    return _ruleset(loader, [str(p) for p in files])


def rules_from_text(text: str, name: str = "<string>") -> RuleSet:
    """Validate rules given as YAML text, with the same checks as :func:`load_rules`.

    >>> rules_from_text("rules: [{name: r, all: [[Google], [employees]]}]").rules[0].name
    'r'
    """
    loader = _Loader()
    if len(text) > MAX_FILE_BYTES:
        loader.errors.append(f"{name}:0: : text is longer than {MAX_FILE_BYTES} characters")
    else:
        loader.load_text(text, name)
        loader.finish()
    if loader.errors:
        raise RuleError(name, loader.errors)
    return _ruleset(loader, [name])


def _ruleset(loader: _Loader, files: list[str]) -> RuleSet:
    rs = RuleSet(rules=tuple(loader.rules), files=tuple(files), entities=tuple(loader.entities))
    _ = rs.term_index  # compile now, so a reload pays for it before it swaps rules in
    return rs


_RULE_META = (
    "name",
    "description",
    "category",
    "tags",
    "severity",
    "languages",
    "channels",
    "mode",
    "schedule",
    "timezone",
    "updates",
    "alert",
    "threshold",
)
_COND_KEYS = ("all", "any", "none", "at_least", "field", "within")
_RULE_KEYS = _RULE_META + _COND_KEYS
_SUB_KEYS = (*_COND_KEYS, "weight", "category")
_TERM_KEYS = ("term", "case_sensitive", "prefix")
_REGEX_KEYS = ("regex", "case_sensitive")
_GROUP_KEYS = ("terms", "unless_near", "window", "weight")
_ENTITY_KEYS = ("kind", "description", "aliases", "includes", "unless_near", "window")

_Lists = dict[str, "tuple[Group, ...] | None"]


class _Loader:
    """Walks composed YAML nodes, collecting rules and ``file:line: path: message`` errors.

    :meth:`load_text` composes and checks each file; :meth:`finish` builds
    entities (shared by all files) first, then each file's lists and rules.
    """

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.errors: list[str] = []
        self.entities: dict[str, tuple[Group, ...] | None] = {}
        self._names: dict[str, str] = {}  # rule name -> source, across files
        self._docs: list[tuple[str, dict[str, tuple[Node, Node]], Node]] = []
        self._file = "<string>"

    # -- plumbing

    def load_text(self, text: str, name: str) -> None:
        self._file = name
        self._seen: set[int] = set()
        depth = _flow_depth(text)
        if depth > MAX_NESTING:
            self.errors.append(f"{name}:0: : brackets nested {depth} deep; at most {MAX_NESTING}")
            return
        try:
            with warnings.catch_warnings():
                # ruamel.yaml warns about reused anchors; anchors are refused anyway.
                warnings.simplefilter("error")
                root = YAML(typ="rt").compose(text)
        except Warning as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self.errors.append(f"{name}:0: : invalid YAML: {first}")
            return
        except YAMLError as e:
            mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
            line = mark.line + 1 if mark is not None else 0
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            self.errors.append(f"{name}:{line}: : invalid YAML: {problem}")
            return
        except RecursionError:
            self.errors.append(f"{name}:0: : invalid YAML: nested too deeply")
            return
        if root is None:
            self._error(None, "", "the file is empty; expected a mapping with a `rules` list")
            return
        if not self._check_node(root, ""):
            return
        top = self._mapping(root, "", ("entities", "terms", "rules"), "with a `rules` list")
        if top is None:
            return
        if "rules" not in top and "entities" not in top:
            self._error(root, "rules", "missing; expected a list of rules (or `entities`)")
            return
        self._docs.append((name, top, root))

    def finish(self) -> None:
        """Build entities of every file, then each file's term lists and rules."""
        raw: dict[str, tuple[str, Node, Node]] = {}
        for name, top, _root in self._docs:
            self._file = name
            if "entities" in top:
                self._entity_nodes(top["entities"][1], raw)
        self._resolve_entities(raw)
        for name, top, _root in self._docs:
            self._file = name
            lists: _Lists = {}
            if "terms" in top:
                lists = self._named_lists(top["terms"][1], "terms")
            if "rules" not in top:
                continue
            rules_node = top["rules"][1]
            if not isinstance(rules_node, SequenceNode) or not rules_node.value:
                self._error(rules_node, "rules", "expected a non-empty list of rules")
                continue
            for i, node in enumerate(rules_node.value):
                rule = self._rule(node, f"rules[{i}]", lists)
                if rule is not None:
                    self.rules.append(rule)

    def _error(self, node: Node | None, path: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        self.errors.append(f"{self._file}:{line}: {path}: {message}")

    def _check_node(self, node: Node, path: str) -> bool:
        """Reject aliases and non-core tags anywhere below ``node``; False if any."""
        ok = True
        stack: list[tuple[Node, str]] = [(node, path)]
        while stack:
            n, p = stack.pop()
            if id(n) in self._seen:
                self._error(n, p, "anchors and aliases (&, *) are not allowed; use a named list")
                ok = False
                continue
            self._seen.add(id(n))
            tag = str(n.tag)
            if isinstance(n, MappingNode):
                if tag != _MAP:
                    self._error(n, p, f"tag {tag} is not allowed")
                    ok = False
                for k, v in n.value:
                    key = k.value if isinstance(k, ScalarNode) else "?"
                    stack.append((v, f"{p}.{key}" if p else str(key)))
                    stack.append((k, p))
            elif isinstance(n, SequenceNode):
                if tag != _SEQ:
                    self._error(n, p, f"tag {tag} is not allowed")
                    ok = False
                stack.extend((v, f"{p}[{i}]") for i, v in enumerate(n.value))
            elif tag not in _SCALAR_TAGS and tag != _NULL:
                self._error(n, p, f"tag {tag} is not allowed")
                ok = False
        return ok

    def _mapping(
        self, node: Node, path: str, allowed: Sequence[str], what: str
    ) -> dict[str, tuple[Node, Node]] | None:
        """A mapping's entries by key; errors for non-mappings, odd and duplicate keys."""
        if not isinstance(node, MappingNode):
            self._error(node, path, f"expected a mapping ({what})")
            return None
        out: dict[str, tuple[Node, Node]] = {}
        for k, v in node.value:
            if not isinstance(k, ScalarNode) or str(k.tag) == _NULL:
                self._error(k, path, "expected a plain key")
                continue
            key = str(k.value)
            where = f"{path}.{key}" if path else key
            if key in out:
                self._error(k, where, "duplicate key")
            elif key not in allowed:
                self._error(k, where, f"unknown key; expected one of: {', '.join(allowed)}")
            else:
                out[key] = (k, v)
        return out

    def _string(self, node: Node, path: str, what: str) -> str | None:
        if not isinstance(node, ScalarNode) or str(node.tag) == _NULL:
            self._error(node, path, f"expected {what}")
            return None
        return str(node.value)

    def _bool(self, node: Node, path: str) -> bool | None:
        if isinstance(node, ScalarNode) and str(node.tag) == _CORE + "bool":
            return str(node.value).lower() == "true"
        self._error(node, path, "expected true or false")
        return None

    def _number(self, node: Node, path: str, *, integer: bool, least: float) -> float | None:
        tags = (_CORE + "int",) if integer else (_CORE + "int", _CORE + "float")
        if isinstance(node, ScalarNode) and str(node.tag) in tags:
            try:
                value = int(str(node.value)) if integer else float(str(node.value))
            except ValueError:
                value = None
            if value is not None and value >= least:
                return value
        kind = "a whole number" if integer else "a number"
        self._error(node, path, f"expected {kind} of at least {least:g}")
        return None

    def _strings(self, node: Node, path: str, what: str) -> list[str] | None:
        if not isinstance(node, SequenceNode):
            self._error(node, path, f"expected a list of {what}")
            return None
        out: list[str] = []
        ok = True
        for j, c in enumerate(node.value):
            value = self._string(c, f"{path}[{j}]", f"a {what[:-1]}")
            if value is None or not value.strip():
                if value is not None:
                    self._error(c, f"{path}[{j}]", f"empty {what[:-1]}")
                ok = False
            elif value not in out:
                out.append(value)
        return out if ok else None

    def _source(self, node: Node) -> str:
        return f"{self._file}:{node.start_mark.line + 1}"

    # -- entities and named lists

    def _entity_nodes(self, node: Node, raw: dict[str, tuple[str, Node, Node]]) -> None:
        if not isinstance(node, MappingNode):
            self._error(node, "entities", "expected a mapping of entity names to entities")
            return
        for k, v in node.value:
            name = str(k.value) if isinstance(k, ScalarNode) else ""
            where = f"entities.{name}"
            if not _LIST_NAME.fullmatch(name):
                self._error(k, where, "an entity name is letters, digits, _ and -")
            elif name in raw:
                self._error(k, where, f"duplicate entity {name!r} (first at {raw[name][0]})")
            else:
                raw[name] = (self._source(k), k, v)
                self.entities[name] = None

    def _resolve_entities(self, raw: dict[str, tuple[str, Node, Node]]) -> None:
        """Turn entity nodes into groups, following ``includes`` (cycles are errors)."""
        own: dict[str, tuple[list[Term], list[str], tuple[Term, ...], int, Node]] = {}
        for name, (source, _k, v) in raw.items():
            self._file = source.rsplit(":", 1)[0]
            where = f"entities.{name}"
            aliases: list[Term] = []
            includes: list[str] = []
            unless: tuple[Term, ...] = ()
            window = DEFAULT_WINDOW
            ok = True
            if isinstance(v, SequenceNode):
                got = self._term_list(v, where)
                ok = got is not None
                aliases = list(got or ())
            else:
                m = self._mapping(v, where, _ENTITY_KEYS, "an entity: {aliases: [...], ...}")
                if m is None:
                    continue
                for key in ("kind", "description"):
                    if key in m:
                        ok = self._string(m[key][1], f"{where}.{key}", "text") is not None and ok
                if "aliases" in m:
                    got = self._term_list(m["aliases"][1], f"{where}.aliases")
                    ok = got is not None and ok
                    aliases = list(got or ())
                if "includes" in m:
                    inc = self._strings(m["includes"][1], f"{where}.includes", "entity names")
                    for j, n in enumerate(inc or ()):
                        if n.lstrip("@") not in raw:
                            self._error(
                                m["includes"][1].value[j],
                                f"{where}.includes[{j}]",
                                f"unknown entity {n!r}",
                            )
                            ok = False
                    includes = [n.lstrip("@") for n in inc or ()]
                    ok = inc is not None and ok
                if "unless_near" in m:
                    got = self._term_list(m["unless_near"][1], f"{where}.unless_near")
                    ok = got is not None and ok
                    unless = tuple(got or ())
                if "window" in m:
                    w = self._number(m["window"][1], f"{where}.window", integer=True, least=1)
                    ok = w is not None and ok
                    window = int(w or DEFAULT_WINDOW)
                if not aliases and not includes:
                    self._error(v, where, "an entity needs `aliases` or `includes`")
                    ok = False
            if ok:
                own[name] = (aliases, includes, unless, window, v)

        done: dict[str, tuple[Group, ...] | None] = {}

        def resolve(name: str, stack: tuple[str, ...]) -> tuple[Group, ...] | None:
            if name in done:
                return done[name]
            if name not in own:
                return None  # its own error is reported already
            if name in stack:
                self._file = raw[name][0].rsplit(":", 1)[0]
                cycle = " -> ".join((*stack[stack.index(name) :], name))
                self._error(raw[name][2], f"entities.{name}.includes", f"cycle: {cycle}")
                return None
            aliases, includes, unless, window, _v = own[name]
            groups = [Group(_dedupe(aliases), unless, window, label=f"@{name}")] if aliases else []
            for inc in includes:
                sub = resolve(inc, (*stack, name))
                if sub is None:
                    done[name] = None
                    return None
                groups.extend(sub)
            merged = _merge(groups, f"@{name}")
            done[name] = merged
            return merged

        for name in raw:
            self.entities[name] = resolve(name, ())

    def _term_list(self, node: Node, path: str) -> list[Term] | None:
        if not isinstance(node, SequenceNode) or not node.value:
            self._error(node, path, "expected a non-empty list of terms")
            return None
        out: list[Term] = []
        ok = True
        for j, t in enumerate(node.value):
            if isinstance(t, ScalarNode) and str(t.value)[:1] in ("$", "@"):
                self._error(t, f"{path}[{j}]", "only terms here, not a $list or @entity")
                ok = False
                continue
            term = self._term(t, f"{path}[{j}]")
            ok = term is not None and ok
            if term is not None:
                out.append(term)
        return out if ok else None

    def _named_lists(self, node: Node, path: str) -> _Lists:
        out: _Lists = {}
        if not isinstance(node, MappingNode):
            self._error(node, path, "expected a mapping of list names to term lists")
            return out
        for k, v in node.value:
            name = str(k.value) if isinstance(k, ScalarNode) else ""
            where = f"{path}.{name}"
            if not _LIST_NAME.fullmatch(name):
                self._error(k, where, "a list name is letters, digits, _ and -")
                continue
            if name in out:
                self._error(k, where, "duplicate key")
                continue
            if not isinstance(v, SequenceNode) or not v.value:
                self._error(v, where, "expected a non-empty list of terms")
                out[name] = None  # known, so references to it do not add a second error
                continue
            groups: list[Group] = []
            terms: list[Term] = []
            ok = True
            for j, t in enumerate(v.value):
                if isinstance(t, ScalarNode) and str(t.value).startswith("$"):
                    self._error(t, f"{where}[{j}]", "a named list cannot use another list")
                    ok = False
                    continue
                if isinstance(t, ScalarNode) and str(t.value).startswith("@"):
                    ent = self._entity_ref(t, f"{where}[{j}]")
                    ok = ent is not None and ok
                    groups.extend(ent or ())
                    continue
                term = self._term(t, f"{where}[{j}]")
                ok = term is not None and ok
                if term is not None:
                    terms.append(term)
            if terms:
                groups.insert(0, Group(tuple(terms)))
            out[name] = _merge(groups, f"${name}") if ok else None
        return out

    def _entity_ref(self, node: Node, path: str) -> tuple[Group, ...] | None:
        ref = str(node.value)[1:]
        if ref not in self.entities:
            known = ", ".join(f"@{k}" for k in sorted(self.entities)[:20]) or "none defined"
            self._error(node, path, f"unknown entity @{ref} (known: {known})")
            return None
        return self.entities[ref]  # None: its own error was reported where it was defined

    # -- rules and conditions

    def _rule(self, node: Node, path: str, lists: _Lists) -> Rule | None:
        m = self._mapping(node, path, _RULE_KEYS, "a rule with name and all/any/none")
        if m is None:
            return None
        ok = True
        name = None
        if "name" not in m:
            self._error(node, f"{path}.name", "missing; every rule needs a name")
            ok = False
        else:
            name = self._string(m["name"][1], f"{path}.name", "a name")
            if name is not None and not _RULE_NAME.fullmatch(name):
                self._error(
                    m["name"][1],
                    f"{path}.name",
                    "a name is 1-100 letters, digits, _ . -, starting with a letter or digit",
                )
                name = None
            if name is None:
                ok = False
            elif name in self._names:
                self._error(
                    m["name"][1],
                    f"{path}.name",
                    f"duplicate rule name {name!r} (first at {self._names[name]})",
                )
                ok = False
            else:
                self._names[name] = self._source(node)
        meta: dict[str, Any] = {}
        for key in ("description", "category"):
            if key in m:
                value = self._string(m[key][1], f"{path}.{key}", "text")
                ok = value is not None and ok
                meta[key] = value
        for key, what in (("channels", "channel names"), ("tags", "tags")):
            if key in m:
                values = self._strings(m[key][1], f"{path}.{key}", what)
                ok = values is not None and ok
                meta[key] = tuple(values or ())
        if "languages" in m:
            langs = self._strings(m["languages"][1], f"{path}.languages", "language codes")
            for j, code in enumerate(langs or ()):
                if not _LANGUAGE.fullmatch(code):
                    self._error(
                        m["languages"][1].value[j],
                        f"{path}.languages[{j}]",
                        f"{code!r} is not a lower-case ISO 639-1 code such as en or de",
                    )
                    ok = False
            ok = langs is not None and ok
            meta["languages"] = tuple(langs or ())
        for key, allowed in (("severity", SEVERITIES), ("mode", MODES)):
            if key in m:
                value = self._string(m[key][1], f"{path}.{key}", f"one of {', '.join(allowed)}")
                if value is not None and value not in allowed:
                    self._error(m[key][1], f"{path}.{key}", f"expected one of {', '.join(allowed)}")
                    value = None
                ok = value is not None and ok
                meta[key] = value
        if "schedule" in m:
            sched = self._string(m["schedule"][1], f"{path}.schedule", "a schedule")
            sm = _SCHEDULE.fullmatch(sched or "")
            hours = [int(h) for h in (sm.group("dh", "wh") if sm else ()) if h]
            minutes = [int(x) for x in (sm.group("dm", "wm") if sm else ()) if x]
            if sched is not None and (
                not sm or any(h > 23 for h in hours) or any(x > 59 for x in minutes)
            ):
                self._error(
                    m["schedule"][1],
                    f"{path}.schedule",
                    "expected hourly, daily [HH:MM] or weekly [mon..sun] [HH:MM]",
                )
                sched = None
            ok = sched is not None and ok
            meta["schedule"] = sched
        if meta.get("mode") == "digest" and "schedule" not in m:
            self._error(node, f"{path}.schedule", "missing; a digest rule needs a schedule")
            ok = False
        if "schedule" in m and meta.get("mode") != "digest":
            self._error(m["schedule"][0], f"{path}.schedule", "only a digest rule has a schedule")
            ok = False
        if "timezone" in m:
            tz = self._string(m["timezone"][1], f"{path}.timezone", "a time zone name")
            if tz is not None:
                try:
                    zone(tz)
                except ValueError as e:
                    self._error(m["timezone"][1], f"{path}.timezone", str(e))
                    tz = None
            if tz is not None and meta.get("mode") != "digest":
                self._error(
                    m["timezone"][0], f"{path}.timezone", "only a digest rule has a timezone"
                )
                tz = None
            ok = tz is not None and ok
            meta["timezone"] = tz
        if "updates" in m:
            updates = self._bool(m["updates"][1], f"{path}.updates")
            ok = updates is not None and ok
            meta["updates"] = updates
        if "alert" in m:
            alert = self._bool(m["alert"][1], f"{path}.alert")
            ok = alert is not None and ok
            meta["alert"] = alert
        if "threshold" in m:
            thr = self._number(m["threshold"][1], f"{path}.threshold", integer=False, least=0)
            ok = thr is not None and ok
            meta["threshold"] = thr
        cond = self._condition_body(node, m, path, lists)
        if cond is None:
            return None
        if not ok or name is None:
            return None
        if "threshold" in meta and not _has_weights(cond):
            self._error(m["threshold"][0], f"{path}.threshold", "no condition has a `weight`")
            return None
        return Rule(
            name=name,
            description=meta.get("description") or "",
            all=cond.all,
            any=cond.any,
            none=cond.none,
            channels=meta.get("channels", ()),
            source=self._source(node),
            at_least=cond.at_least,
            field=cond.field,
            within=cond.within,
            category=meta.get("category"),
            tags=meta.get("tags", ()),
            severity=meta.get("severity") or "medium",
            languages=meta.get("languages", ()),
            mode=meta.get("mode") or "immediate",
            schedule=meta.get("schedule"),
            timezone=meta.get("timezone"),
            updates=meta.get("updates") or False,
            alert=meta.get("alert", True),
            threshold=meta.get("threshold"),
        )

    def _condition_body(
        self, node: Node, m: dict[str, tuple[Node, Node]], path: str, lists: _Lists
    ) -> Condition | None:
        """The ``all``/``any``/``none``/``at_least``/``field``/``within`` of a rule or condition."""
        ok = True
        parts: dict[str, tuple[Cond, ...]] = {}
        for key in ("all", "any", "none"):
            parts[key] = ()
            if key in m:
                got = self._conditions(m[key][1], f"{path}.{key}", lists)
                if got is None:
                    ok = False
                else:
                    parts[key] = got
        at_least = 1
        if "at_least" in m:
            n = self._number(m["at_least"][1], f"{path}.at_least", integer=True, least=1)
            if n is None:
                ok = False
            elif ok and int(n) > len(parts["any"]):
                self._error(
                    m["at_least"][1],
                    f"{path}.at_least",
                    f"{int(n)} is more than the {len(parts['any'])} conditions under `any`",
                )
                ok = False
            at_least = int(n or 1)
        fld = None
        if "field" in m:
            fld = self._string(m["field"][1], f"{path}.field", "title or text")
            if fld is not None and fld not in FIELDS:
                self._error(m["field"][1], f"{path}.field", "expected title or text")
                fld = None
            ok = fld is not None and ok
        within: int | str | None = None
        if "within" in m:
            w = m["within"][1]
            if isinstance(w, ScalarNode) and str(w.value) == "sentence":
                within = "sentence"
            elif isinstance(w, ScalarNode) and str(w.tag) == _CORE + "int":
                n = self._number(w, f"{path}.within", integer=True, least=1)
                within = int(n) if n is not None else None
                ok = n is not None and ok
            else:
                self._error(w, f"{path}.within", "expected `sentence` or a number of words")
                ok = False
        if ok and not parts["all"] and not parts["any"]:
            self._error(node, path, "a rule needs at least one group under `all` or `any`")
            ok = False
        if not ok:
            return None
        return Condition(
            all=parts["all"],
            any=parts["any"],
            none=parts["none"],
            at_least=at_least,
            field=fld,
            within=within,
            source=self._source(node),
        )

    def _conditions(self, node: Node, path: str, lists: _Lists) -> tuple[Cond, ...] | None:
        if not isinstance(node, SequenceNode):
            self._error(node, path, "expected a list")
            return None
        out: list[Cond] = []
        ok = True
        for i, g in enumerate(node.value):
            cond = self._cond(g, f"{path}[{i}]", lists)
            if cond is None:
                ok = False
            else:
                out.append(cond)
        return tuple(out) if ok else None

    def _cond(self, node: Node, path: str, lists: _Lists) -> Cond | None:
        """One condition: a term, $list, @entity, a list of alternatives, or a mapping."""
        if isinstance(node, MappingNode):
            keys = {str(k.value) for k, _ in node.value if isinstance(k, ScalarNode)}
            if keys & {"term", "regex"}:
                term = self._term(node, path)
                return Group((term,)) if term is not None else None
            if "terms" in keys:
                return self._group_mapping(node, path, lists)
            return self._sub_condition(node, path, lists)
        items = list(node.value) if isinstance(node, SequenceNode) else [node]
        if not items:
            self._error(node, path, "empty group; list at least one term")
            return None
        return self._alternatives(node, items, path, lists)

    def _alternatives(self, node: Node, items: list[Node], path: str, lists: _Lists) -> Cond | None:
        """Any of ``items``: plain terms are merged into one group."""
        terms: list[Term] = []
        groups: list[Group] = []
        conds: list[Cond] = []
        ok = True
        for i, t in enumerate(items):
            where = path if node is t else f"{path}[{i}]"
            if isinstance(t, ScalarNode) and str(t.value).startswith("$"):
                ref = str(t.value)[1:]
                if ref not in lists:
                    known = ", ".join(f"${k}" for k in lists) or "none defined under `terms`"
                    self._error(t, where, f"unknown term list ${ref} (known: {known})")
                    ok = False
                elif lists[ref] is None:
                    ok = False
                else:
                    groups.extend(lists[ref] or ())
                continue
            if isinstance(t, ScalarNode) and str(t.value).startswith("@"):
                ent = self._entity_ref(t, where)
                ok = ent is not None and ok
                groups.extend(ent or ())
                continue
            if isinstance(t, MappingNode) or (isinstance(t, SequenceNode) and node is not t):
                sub = self._cond(t, where, lists)
                ok = sub is not None and ok
                if isinstance(sub, Group) and not sub.unless and sub.weight is None:
                    terms.extend(sub.terms)
                elif sub is not None:
                    conds.append(sub)
                continue
            term = self._term(t, where)
            ok = term is not None and ok
            if term is not None:
                terms.append(term)
        if not ok:
            return None
        label = ""
        if len(items) == 1 and isinstance(items[0], ScalarNode):
            label = str(items[0].value) if str(items[0].value)[:1] in "$@" else ""
        merged = _merge([Group(tuple(terms)), *groups] if terms else groups, label)
        alternatives: list[Cond] = [*merged, *conds]
        if len(alternatives) == 1:
            return alternatives[0]
        return Condition(any=tuple(alternatives), source=self._source(node))

    def _group_mapping(self, node: Node, path: str, lists: _Lists) -> Cond | None:
        m = self._mapping(node, path, _GROUP_KEYS, "a group: {terms: [...], unless_near: [...]}")
        if m is None:
            return None
        inner = m["terms"][1]
        items = list(inner.value) if isinstance(inner, SequenceNode) else [inner]
        base = self._alternatives(inner, items, f"{path}.terms", lists) if items else None
        if not items:
            self._error(inner, f"{path}.terms", "empty group; list at least one term")
        unless: tuple[Term, ...] = ()
        ok = base is not None
        if "unless_near" in m:
            got = self._term_list(m["unless_near"][1], f"{path}.unless_near")
            ok = got is not None and ok
            unless = tuple(got or ())
        window = DEFAULT_WINDOW
        if "window" in m:
            w = self._number(m["window"][1], f"{path}.window", integer=True, least=1)
            ok = w is not None and ok
            window = int(w or DEFAULT_WINDOW)
        weight = None
        if "weight" in m:
            weight = self._number(m["weight"][1], f"{path}.weight", integer=False, least=0)
            ok = weight is not None and ok
        if not ok or base is None:
            return None
        if isinstance(base, Group):
            return Group(base.terms, unless or base.unless, window, weight, base.label)
        return Condition(
            any=tuple(
                Group(g.terms, unless or g.unless, window, None, g.label)
                if isinstance(g, Group)
                else g
                for g in base.any
            ),
            weight=weight,
            source=self._source(node),
        )

    def _sub_condition(self, node: Node, path: str, lists: _Lists) -> Cond | None:
        m = self._mapping(node, path, _SUB_KEYS, "a condition: {all: ..., any: ..., none: ...}")
        if m is None:
            return None
        if not m.keys() & {"all", "any"}:
            self._error(node, f"{path}.any", "missing; a condition needs `all` or `any`")
            return None
        body = self._condition_body(node, m, path, lists)
        weight = None
        category = None
        ok = body is not None
        if "weight" in m:
            weight = self._number(m["weight"][1], f"{path}.weight", integer=False, least=0)
            ok = weight is not None and ok
        if "category" in m:
            category = self._string(m["category"][1], f"{path}.category", "text")
            ok = category is not None and ok
        if not ok or body is None:
            return None
        # {any: [terms]} alone is just a group, as in the first rule form.
        plain = all(isinstance(g, Group) and not g.unless and g.weight is None for g in body.any)
        if set(m) == {"any"} and plain:
            return Group(_dedupe([t for g in body.any for t in g.terms]))  # type: ignore[union-attr]
        return Condition(
            all=body.all,
            any=body.any,
            none=body.none,
            at_least=body.at_least,
            field=body.field,
            within=body.within,
            weight=weight,
            category=category,
            source=body.source,
        )

    def _term(self, node: Node, path: str) -> Term | None:
        case_sensitive = prefix = regex = False
        if isinstance(node, MappingNode):
            is_regex = any(isinstance(k, ScalarNode) and k.value == "regex" for k, _ in node.value)
            keys = _REGEX_KEYS if is_regex else _TERM_KEYS
            m = self._mapping(node, path, keys, "a term: {term: ..., case_sensitive: ...}")
            if m is None:
                return None
            main = "regex" if is_regex else "term"
            if main not in m:
                self._error(node, f"{path}.term", "missing; write the term's text here")
                return None
            text = self._string(m[main][1], f"{path}.{main}", "the term's text")
            flags_ok = True
            for key in ("case_sensitive", "prefix"):
                if key in m:
                    value = self._bool(m[key][1], f"{path}.{key}")
                    if value is None:
                        flags_ok = False
                    elif key == "prefix":
                        prefix = value
                    else:
                        case_sensitive = value
            if text is None or not flags_ok:
                return None
            where = f"{path}.{main}"
            if is_regex:
                return self._regex(m[main][1], where, text, case_sensitive)
        else:
            if not isinstance(node, ScalarNode) or str(node.tag) == _NULL:
                kind = "a list" if isinstance(node, SequenceNode) else "nothing"
                self._error(node, path, f"expected a term (text), got {kind}")
                return None
            text = str(node.value)
            where = path
            if text.startswith("="):
                case_sensitive, text = True, text[1:]
            if text.endswith("*"):
                prefix, text = True, text[:-1]
        text = text.strip()
        if "*" in text:
            self._error(node, where, "* is only allowed at the end of a term")
            return None
        if not any(True for _ in split_words(text)):
            self._error(node, where, f"empty term {text!r}: it needs letters or digits")
            return None
        term = Term(text, case_sensitive=case_sensitive, prefix=prefix, regex=regex)
        if term.spellings() is None:
            self._error(
                node, where, f"too many ae/ä, oe/ö, ue/ü, ss/ß spellings (>{MAX_SPELLINGS})"
            )
            return None
        return term

    def _regex(self, node: Node, where: str, text: str, case_sensitive: bool) -> Term | None:
        try:
            compiled = _compile_regex(text, case_sensitive)
        except re2.error as e:
            reason = e.args[0] if e.args else e
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            self._error(node, where, f"invalid or non-RE2 regular expression: {reason}")
            return None
        if compiled.search("") is not None:
            self._error(node, where, "the regular expression matches the empty string")
            return None
        return Term(text, case_sensitive=case_sensitive, regex=True)


def _dedupe(terms: Sequence[Term]) -> tuple[Term, ...]:
    # "protest*" and "Protest*" are one term unless case matters.
    seen: dict[tuple[str, bool, bool, bool], Term] = {}
    for term in terms:
        key = term.text if term.case_sensitive or term.regex else term.text.casefold()
        seen.setdefault((key, term.case_sensitive, term.prefix, term.regex), term)
    return tuple(seen.values())


def _merge(groups: Sequence[Group], label: str) -> tuple[Group, ...]:
    """Groups with the same exclusions become one; order kept."""
    by: dict[tuple[tuple[Term, ...], int, float | None], list[Term]] = {}
    labels: dict[tuple[tuple[Term, ...], int, float | None], str] = {}
    for g in groups:
        key = (g.unless, g.window if g.unless else DEFAULT_WINDOW, g.weight)
        by.setdefault(key, []).extend(g.terms)
        labels.setdefault(key, g.label)
    many = len(by) > 1
    return tuple(
        Group(_dedupe(terms), k[0], k[1], k[2], labels[k] if many else label or labels[k])
        for k, terms in by.items()
    )


def _has_weights(cond: Cond) -> bool:
    if cond.weight is not None:
        return True
    if isinstance(cond, Group):
        return False
    return any(_has_weights(c) for c in (*cond.all, *cond.any))
