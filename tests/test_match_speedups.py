"""The optional C accelerator (monitor/_speedups.c) gives exactly what the pure-Python path gives.

:mod:`monitor.match` uses ``monitor._speedups`` when it was built and its own
Python code otherwise. Every test here runs both ways (``accel`` fixture), and
the property tests compare the two, and both with the brute-force reference.
Where the extension is not built, the C side of each test is skipped and the
Python side still runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from monitor import match
from monitor.match import (
    find_terms,
    match_article,
    prepare,
    reference_find_terms,
    split_sentences,
)
from monitor.rules import AVAILABLE_ENGINES, Term, TermIndex, load_rules
from monitor.types import Article

try:
    from monitor import _speedups
except ImportError:  # pragma: no cover - depends on the build
    _speedups = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
needs_c = pytest.mark.skipif(_speedups is None, reason="monitor._speedups is not built")
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared is not beside the project")


ENGINES_HERE = AVAILABLE_ENGINES
WAYS = [pytest.param("python", id="python"), pytest.param("c", id="c", marks=needs_c)]


@pytest.fixture(params=WAYS)
def accel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test with the C accelerator, then without it."""
    if request.param == "python":
        monkeypatch.setattr(match, "_speedups", None)
    else:
        monkeypatch.setattr(match, "_speedups", _speedups)
    yield request.param


def both(fn, *args):  # type: ignore[no-untyped-def]
    """``fn(*args)`` computed without and then with the accelerator."""
    saved = match._speedups
    try:
        match._speedups = None
        slow = fn(*args)
        match._speedups = _speedups
        fast = fn(*args)
    finally:
        match._speedups = saved
    return slow, fast


def test_the_accelerator_is_used_when_built() -> None:
    assert match._speedups is _speedups


# -- the candidate filter


_ALPHA = "abcdeäöüßAEOUSsu"
_word = st.text(alphabet=_ALPHA, min_size=1, max_size=5)
_gap = st.sampled_from([" ", "-", "  ", "\n", ", ", "'", "\u2013", " - ", "\U0001f600", "中"])


@st.composite
def _term(draw: st.DrawFn) -> Term:
    words = draw(st.lists(_word, min_size=1, max_size=3))
    gaps = [draw(st.sampled_from([" ", "-", "- "])) for _ in words[1:]]
    text = words[0] + "".join(g + w for g, w in zip(gaps, words[1:], strict=True))
    return Term(text, case_sensitive=draw(st.booleans()), prefix=draw(st.booleans()))


@needs_c
@pytest.mark.parametrize("engine", ENGINES_HERE)
@settings(max_examples=200, deadline=None)
@given(
    st.lists(_term(), min_size=1, max_size=8, unique=True),
    st.lists(st.tuples(_word, _gap), max_size=30),
)
def test_c_filter_equals_python_and_reference(
    engine: str, terms: list[Term], pieces: list[tuple[str, str]]
) -> None:
    """Word boundaries, case rules, prefixes, wide characters: C = Python = reference."""
    assume(all(t.spellings() is not None for t in terms))
    index = TermIndex.from_terms(terms, engine)
    text = "".join(w + g for w, g in pieces) + " " + " | ".join(t.text for t in terms)
    p = prepare("Ärger \U0001f600", text)
    slow, fast = both(find_terms, p, index)
    assert fast == slow == reference_find_terms(p, index.terms)
    # Same order of terms too: rules break ties by it.
    assert list(fast) == list(slow)


@pytest.mark.parametrize("engine", ENGINES_HERE)
def test_find_terms_each_way(accel: str, engine: str) -> None:
    terms = [
        Term("ICE", case_sensitive=True),
        Term("Mitarbeiter", prefix=True),
        Term("open letter"),
    ]
    index = TermIndex.from_terms(terms, engine)
    p = prepare("€ ICE", "Die Mitarbeiterinnen, ice, OPEN letter, ICEd, Open-Letter.")
    assert find_terms(p, index) == {0: [(2, 5)], 1: [(10, 26)], 2: [(33, 44)]}


@needs_c
def test_c_filter_rejects_bad_input() -> None:
    assert _speedups is not None
    table = _speedups.KeyTable(((3, ((0, None, False),)),))
    with pytest.raises(TypeError):
        _speedups.hits_from_iter([(1, "not a key id")], "ab", "ab", table)
    with pytest.raises(ValueError, match="key id"):
        _speedups.hits_from_iter([(1, 5)], "ab", "ab", table)  # key 5 of a table of one key
    with pytest.raises(ValueError, match="same length"):
        _speedups.hits_from_iter([], "ab", "abc", table)
    collector = _speedups.Collector()
    collector(5, 0, 3, 0, None)  # key 5 of a table of one key
    with pytest.raises(ValueError, match="out of range"):
        _speedups.hits_from_collector(collector, b"abc", "abc", "abc", table)
    assert collector.count() == 0  # emptied even on error
    with pytest.raises(TypeError):
        _speedups.KeyTable(((3, ((0, 7, False),)),))  # exact must be str or None
    with pytest.raises(ValueError):
        _speedups.KeyTable(((3, ((-1, None, False),)),))


@needs_c
def test_c_word_trie_rejects_bad_keys() -> None:
    assert _speedups is not None
    one = ((3, ((0, None, False),)),)
    with pytest.raises(ValueError, match="same length"):
        _speedups.WordTrie(("abc", "abd"), one)
    with pytest.raises(ValueError, match="non-empty"):
        _speedups.WordTrie(("",), ((0, ((0, None, False),)),))
    with pytest.raises(ValueError, match="length differs"):
        _speedups.WordTrie(("ab",), one)
    with pytest.raises(ValueError, match="distinct"):
        _speedups.WordTrie(("abc", "abc"), one * 2)


@needs_c
def test_c_word_trie_walks_only_from_word_starts() -> None:
    """Keys are found where a word starts, overlapping and nested ones too, by start then length."""
    assert _speedups is not None
    keys = ("ice", "ice cream", "cream", "e")
    info = tuple((len(k), ((i, None, False),)) for i, k in enumerate(keys))
    trie = _speedups.WordTrie(keys, info)
    # "nice" and "icecream" hold keys, but not at a word start / word end.
    low = "ice cream, nice icecream e"
    assert trie.candidates(low) == [(2, 0), (8, 1), (8, 2), (18, 0), (25, 3)]
    # find() filters the word ends as well: "ice" of "icecream" goes.
    assert trie.find(low, low) == {0: [(0, 3)], 1: [(0, 9)], 2: [(4, 9)], 3: [(25, 26)]}
    # Children beyond the root's direct table (CJK, emoji) and many siblings (binary search).
    many = (*(f"x{chr(c)}" for c in range(0x4E00, 0x4E40)), "\U0001f600 ok")
    info = tuple((len(k), ((i, None, False),)) for i, k in enumerate(many))
    trie = _speedups.WordTrie(many, info)
    for i, key in enumerate(many):
        assert trie.candidates(key) == [(len(key) - 1, i)], key
    assert trie.candidates("x\u4e40z") == []


# -- sentences

_SENTENCE_PIECES = st.sampled_from(
    [
        "Dr",
        "bzw",
        "U",
        "S",
        "am 3",
        "Oktober",
        "oktober",
        "März",
        "Mitarbeiter",
        "word",
        "Word",
        "x",
        "ab_c",
        "12",
        "Straße",
        "İ",
        "ǅ",
        "é",
        ".",
        "..",
        "!",
        "?",
        "\u2026",
        '"',
        "'",
        "\u00bb",
        "\u201d",
        ")",
        "]",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\u00a0",
        "\u2009",
        "\t",
        "-",
        "\u2028",
    ]
)


@needs_c
@settings(max_examples=500, deadline=None)
@given(st.lists(_SENTENCE_PIECES, max_size=40))
def test_c_sentences_equal_python(pieces: list[str]) -> None:
    """Abbreviations, initials, ordinals before months, closers, odd spaces: the same cuts."""
    text = "".join(pieces)
    slow, fast = both(split_sentences, text)
    assert fast == slow


@needs_c
@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_c_sentences_equal_python_on_any_text(text: str) -> None:
    slow, fast = both(split_sentences, text)
    assert fast == slow


def test_sentences_each_way(accel: str) -> None:
    text = "Dr. Smith sprach am 3. Oktober mit uns. Workers walked out! ICE? yes.\n\nNew line"
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "Dr. Smith sprach am 3. Oktober mit uns.",
        "Workers walked out!",
        "ICE? yes.",
        "New line",
    ]


# -- evidence


_spans = st.lists(st.integers(0, 60), min_size=1, max_size=6).map(
    lambda xs: [(x, x + 3) for x in xs]
)


@needs_c
@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 60), max_size=8, unique=True).map(sorted),
    st.lists(_spans, max_size=6),
)
def test_c_best_sentence_equals_python(
    starts: list[int], occurrences: list[list[tuple[int, int]]]
) -> None:
    """Distinct terms per sentence, earliest on a tie, the first start in it: also for unsorted spans."""
    assert _speedups is not None
    assert _speedups.best_sentence(starts, occurrences, 64) == match._best_sentence(
        starts, occurrences, 64
    )


@pytest.mark.parametrize("engine", ENGINES_HERE)
@needs_c
@needs_corpus
def test_shipped_pack_on_corpus_records_same_matches(engine: str) -> None:
    """Whole matches (terms, evidence sentence, score, tags) agree on real records."""
    rules = load_rules(ROOT / "rules")
    rules.__dict__["term_index"] = TermIndex.build(rules.rules, engine)
    lines = (CORPUS / "articles-dev.jsonl").read_text(encoding="utf-8").splitlines()
    for line in lines[:120]:
        d = json.loads(line)
        article = Article(url=None, title=d["title"] or "", text=d["text"] or "")
        slow, fast = both(match_article, article, rules)
        assert fast == slow


def test_long_sentence_evidence_each_way(accel: str) -> None:
    """A sentence far longer than SENTENCE_CHARS is trimmed around the first term."""
    from monitor.rules import rules_from_text

    rs = rules_from_text("rules: [{name: r, all: [[walkout], [Google]]}]")
    text = "filler " * 200 + "Google staff staged a walkout " + "and more " * 100 + "today."
    found = match_article(Article(url=None, title="", text=text), rs)
    assert found[0].sentence.startswith("… ")
    assert "Google staff staged a walkout" in found[0].sentence
    assert len(found[0].sentence) <= match.SENTENCE_CHARS + 4


# -- preparing the text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.text(max_size=200))
def test_prepared_whitespace_is_single_spaces_and_line_breaks(title: str, text: str) -> None:
    """What _trim relies on: whitespace runs of one character, a space or a line break."""
    shown = prepare(title, text).shown
    for a, b in pairwise(shown):
        assert not (a.isspace() and b.isspace())
    assert all(c in " \n" for c in shown if c.isspace())


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab \n\t\u00a0\u2009\u3000\u0085é中"), max_size=12))
def test_c_untidy_equals_python(text: str) -> None:
    assert _speedups is not None
    odd = match._ODD_SPACES if not text.isascii() else match._ODD_ASCII_SPACES
    saved = match._speedups
    try:
        match._speedups = None
        slow = match._untidy(text, odd)
    finally:
        match._speedups = saved
    assert _speedups.untidy(text) == slow


@needs_c
def test_c_nfc_stable_only_for_characters_nfc_leaves_alone() -> None:
    """Every character ``nfc_stable`` lets through is one NFC cannot change in any context."""
    import unicodedata

    assert _speedups is not None
    # Second halves of canonical pairs: a character NFC may fold into the one before it.
    seconds = set()
    for c in range(0x110000):
        d = unicodedata.decomposition(chr(c))
        if d and not d.startswith("<") and len(parts := d.split()) == 2:
            seconds.add(int(parts[1], 16))
    stable = [c for c in range(0x110000) if _speedups.nfc_stable(chr(c) + "\u2019")]
    assert 0xE4 in stable and 0x2014 in stable and 0x301 not in stable and 0x2000 not in stable
    for c in stable:
        char = chr(c)
        assert unicodedata.combining(char) == 0, hex(c)
        assert unicodedata.normalize("NFC", char) == char, hex(c)
        assert c not in seconds, hex(c)


@needs_c
@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from("aeA \u0301\u0308\u2000\u2019\u2014\u212b\u00c5é中"), max_size=12
    )
)
def test_c_nfc_stable_means_normalized(text: str) -> None:
    import unicodedata

    assert _speedups is not None
    if _speedups.nfc_stable(text):
        assert unicodedata.normalize("NFC", text) == text
    assert prepare("", text).shown == prepare_pure("", text)


def prepare_pure(title: str, text: str) -> str:
    """:func:`prepare`'s ``shown`` without the accelerator."""
    saved = match._speedups
    try:
        match._speedups = None
        return prepare(title, text).shown
    finally:
        match._speedups = saved


# -- rule evaluation helpers


@needs_c
@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.integers(0, 7), st.lists(st.integers(0, 9), min_size=1, max_size=3)),
    st.lists(st.sampled_from(["ICE", "ice", "=ICE", "b", "a*", "Müller"]), min_size=8, max_size=8),
    st.lists(st.sampled_from(["ICE", "ice", "b", "a*"]), min_size=8, max_size=8),
)
def test_c_terms_in_order_equals_python(
    starts: dict[int, list[int]], written: list[str], shown: list[str]
) -> None:
    """By first start, then as written, then insertion order; each shown text once."""
    assert _speedups is not None
    spans = {t: sorted((s, s + 1) for s in xs) for t, xs in starts.items()}
    keyed = sorted(
        (found[0][0], written[t], i, shown[t]) for i, (t, found) in enumerate(spans.items())
    )
    expected = tuple(dict.fromkeys(k[3] for k in keyed))
    assert _speedups.terms_in_order(spans, tuple(written), tuple(shown)) == expected


@needs_c
@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.integers(0, 9), st.lists(st.integers(100, 103), max_size=3).map(tuple)),
    st.sets(st.integers(0, 9)),
)
def test_c_by_group_equals_python(term_groups: dict[int, tuple[int, ...]], found: set[int]) -> None:
    hits = {t: [(t, t + 1)] for t in sorted(found) if t in term_groups}
    expected: dict[int, dict[int, list[tuple[int, int]]]] = {}
    for tid, spans in hits.items():
        for key in term_groups[tid]:
            expected.setdefault(key, {})[tid] = spans
    got = _speedups.by_group(hits, term_groups)  # type: ignore[union-attr]
    assert got == expected
    assert [list(g) for g in got.values()] == [list(g) for g in expected.values()]
    assert list(got) == list(expected)


def _written(term: Term) -> str:
    return ("=" if term.case_sensitive else "") + term.text + ("*" if term.prefix else "")


@needs_c
@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(_term(), min_size=1, max_size=4), min_size=1, max_size=4),
    st.lists(st.tuples(_word, _gap), max_size=30),
    st.sampled_from([None, "de", "en"]),
)
def test_c_single_groups_equal_python(
    groups: list[list[Term]], pieces: list[tuple[str, str]], language: str | None
) -> None:
    """Rules that are one group of terms, decided in one C call: the same matches as in Python."""
    from monitor.rules import rules_from_text

    assume(all(t.spellings() is not None for g in groups for t in g))
    rules = "rules:\n" + "".join(
        f"  - name: r{i}\n    any: [{json.dumps([_written(t) for t in g], ensure_ascii=False)}]\n"
        + ("    languages: [de]\n" if i % 2 else "")
        for i, g in enumerate(groups)
    )
    rs = rules_from_text(rules)
    assert len(rs.term_index.slot) == len(groups)
    words = [t.text for g in groups for t in g]
    text = "".join(w + g for w, g in pieces) + ". " + ". ".join(words[::2]) + " " + words[-1]
    article = Article(url=None, title="Ärger", text=text, language=language)
    slow, fast = both(match_article, article, rs)
    assert fast == slow
    assert fast  # the last term is in the text: at least its rule matches where its language fits


@needs_c
def test_c_single_groups_rejects_bad_input() -> None:
    assert _speedups is not None
    ok = ({0: [(0, 1)]}, ((0,),), 1, ("a",), ("a",), [0], 1)
    assert _speedups.single_groups(*ok) == [(("a",), 0, 0)]
    with pytest.raises(ValueError, match="term id"):
        _speedups.single_groups({5: [(0, 1)]}, *ok[1:])
    with pytest.raises(ValueError, match="slot"):
        _speedups.single_groups(ok[0], ((3,),), *ok[2:])
    with pytest.raises(ValueError, match="negative"):
        _speedups.single_groups(ok[0], ok[1], -1, *ok[3:])
    assert _speedups.single_groups({}, *ok[1:]) == [None]


@pytest.mark.skipif(not hasattr(_speedups, "lower"), reason="no C lower() on this Python")
@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=40)
    | st.lists(st.sampled_from("aAßẞİ\u03a3\u03c3\u03c2ÀȺ ǅ€\U0001d400")).map("".join)
)
def test_c_lower_equals_lower_text(text: str) -> None:
    """Per character, İ kept; a capital sigma (lower case by context) is left to Python."""
    from monitor.rules import lower_text

    low = _speedups.lower(text)  # type: ignore[union-attr]
    if "\u03a3" in text:
        assert low is None
    else:
        assert low == lower_text(text)


@needs_c
@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.text(max_size=120))
def test_prepare_equal_both_ways(title: str, text: str) -> None:
    slow, fast = both(prepare, title, text)
    assert fast == slow
