"""The full rule language: entities, logic, scopes, exclusions, RE2, metadata, golden files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from monitor.exceptions import RuleError
from monitor.match import find_terms, match_article, prepare, reference_find_terms
from monitor.rules import AVAILABLE_ENGINES, Term, TermIndex, load_rules, rules_from_text
from monitor.types import Article

DATA = Path(__file__).parent / "data" / "rules"


def art(text: str, title: str = "", language: str | None = None) -> Article:
    return Article(url=None, title=title, text=text, language=language)


def names(rules_text: str, text: str, **kw: str) -> list[str]:
    return [m.rule for m in match_article(art(text, **kw), rules_from_text(rules_text))]


# -- golden files: rules beside the matches they must give


@pytest.mark.parametrize("case", sorted(DATA.glob("*.cases.json")), ids=lambda p: p.name)
def test_golden_rule_files(case: Path) -> None:
    rules = load_rules(case.with_name(case.name.replace(".cases.json", ".yaml")))
    for item in json.loads(case.read_text(encoding="utf-8")):
        got = [
            {
                "rule": m.rule,
                "category": m.category,
                "score": m.score,
                "terms": list(m.terms),
                "tags": list(m.tags),
                **({"alert": False} if not m.alert else {}),
            }
            for m in match_article(art(item["text"], title=item["title"]), rules)
        ]
        assert got == item["expect"], item["text"]


def test_single_file_brings_the_entities_directory_beside_it() -> None:
    rs = load_rules(DATA / "language.yaml")
    assert set(rs.entities) == {"microsoft", "github", "ice"}
    assert any(f.endswith("entities/orgs.yaml") for f in rs.files)


# -- entities


def test_entity_includes_subsidiaries_and_cycles_are_errors() -> None:
    text = """
entities:
  a: {aliases: [Alpha], includes: [b]}
  b: {aliases: [Beta], includes: [a]}
  c: [Gamma]
rules: [{name: r, all: ["@c", "@a", "@zzz"]}]
"""
    with pytest.raises(RuleError) as info:
        rules_from_text(text)
    errors = "\n".join(info.value.errors)
    assert "cycle: a -> b -> a" in errors
    assert "rules[0].all[2]: unknown entity @zzz" in errors


def test_entity_unknown_include_and_empty_entity() -> None:
    with pytest.raises(RuleError) as info:
        rules_from_text(
            "entities: {a: {includes: [nope]}, b: {kind: x}}\nrules: [{name: r, any: [x]}]"
        )
    errors = "\n".join(info.value.errors)
    assert "entities.a.includes[0]: unknown entity 'nope'" in errors
    assert "entities.b: an entity needs `aliases` or `includes`" in errors


def test_ice_near_train_words_does_not_count() -> None:
    rules = "entities: {ice: {aliases: [=ICE], unless_near: [Zug, train], window: 3}}\n"
    rules += "rules: [{name: r, all: ['@ice']}]"
    assert names(rules, "Der ICE-Zug fiel aus.") == []
    assert names(rules, "The ICE train was late.") == []
    assert names(rules, "Workers protest the ICE contract.") == ["r"]
    # far enough from the train word, the agency counts again
    assert names(rules, "Der Zug fiel aus. Heute aber protestieren viele gegen ICE.") == ["r"]


# -- terms: spellings, case, prefixes


@pytest.mark.parametrize(
    ("term", "text"),
    [
        ("Beschäftigte", "die Beschaeftigten BESCHAEFTIGTE"),
        ("Beschaeftigte", "die Beschäftigte"),
        ("Straße", "STRASSE"),
        ("Müller*", "Muellers"),
        ("Mu*", "Müller"),
        ("=Überwachung", "Ueberwachung"),
    ],
)
def test_umlaut_spellings(term: str, text: str) -> None:
    assert names(f"rules: [{{name: r, any: ['{term}']}}]", text) == ["r"]


def test_case_sensitive_term_keeps_case_across_spellings() -> None:
    assert names("rules: [{name: r, any: ['=Überwachung']}]", "ueberwachung") == []


# -- logic and scope


def test_nested_all_any_none_and_at_least() -> None:
    rules = """
rules:
  - name: r
    all:
      - any:
          - all: [[Google], [employees]]
          - all: [[Amazon], [workers]]
        none: [[earnings]]
    any: [[letter], [petition], [walkout]]
    at_least: 2
"""
    assert names(rules, "Google employees: a letter and a petition.") == ["r"]
    assert names(rules, "Google employees: a letter.") == []
    assert names(rules, "Amazon workers: letter, walkout.") == ["r"]
    assert names(rules, "Amazon workers: letter, walkout, earnings.") == []


def test_field_language_and_metadata() -> None:
    rules = """
rules:
  - name: r
    languages: [de]
    severity: critical
    mode: digest
    schedule: daily 08:00
    channels: [inbox]
    field: text
    any: [[Streik]]
"""
    rs = rules_from_text(rules)
    rule = rs.rules[0]
    assert (rule.severity, rule.mode, rule.schedule, rule.languages) == (
        "critical",
        "digest",
        "daily 08:00",
        ("de",),
    )
    assert names(rules, "Streik!", language="de") == ["r"]
    assert names(rules, "Streik!", language="en") == []
    assert names(rules, "Streik!") == ["r"]  # unknown language: matched
    assert names(rules, "nichts", title="Streik", language="de") == []


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("{name: r, mode: digest, any: [x]}", "rules[0].schedule: missing; a digest rule"),
        ("{name: r, mode: later, any: [x]}", "rules[0].mode: expected one of immediate, digest"),
        (
            "{name: r, mode: digest, schedule: 'daily 25:00', any: [x]}",
            "rules[0].schedule: expected",
        ),
        ("{name: r, schedule: hourly, any: [x]}", "rules[0].schedule: only a digest rule"),
        ("{name: r, severity: huge, any: [x]}", "rules[0].severity: expected one of"),
        ("{name: r, languages: [English], any: [x]}", "rules[0].languages[0]: 'English' is not"),
        ("{name: r, threshold: 2, any: [x]}", "rules[0].threshold: no condition has a `weight`"),
        ("{name: r, at_least: 3, any: [x, y]}", "rules[0].at_least: 3 is more than the 2"),
        ("{name: r, within: soon, any: [x]}", "rules[0].within: expected `sentence` or a number"),
        ("{name: r, field: body, any: [x]}", "rules[0].field: expected title or text"),
        ("{name: r, alert: maybe, any: [x]}", "rules[0].alert: expected true or false"),
    ],
)
def test_metadata_errors(rule: str, expected: str) -> None:
    with pytest.raises(RuleError) as info:
        rules_from_text(f"rules: [{rule}]")
    assert any(expected in e for e in info.value.errors), info.value.errors


# -- RE2 (FAULTS C15, C16)


@pytest.mark.parametrize(
    "pattern",
    ["(a)\\\\1", "a(?=b)", "(?<!x)a", "["],
    ids=["backref", "lookahead", "lookbehind", "bad"],
)
def test_non_re2_patterns_are_load_errors(pattern: str) -> None:
    """C16: a backreference, lookaround or invalid pattern rejects the whole file."""
    with pytest.raises(RuleError) as info:
        rules_from_text(
            f'rules: [{{name: r, any: [{{regex: "{pattern}"}}]}}, {{name: ok, any: [x]}}]'
        )
    assert any("rules[0].any[0].regex: invalid or non-RE2" in e for e in info.value.errors)


def test_redos_pattern_runs_in_linear_time() -> None:
    """C15: (a|aa)+$ and (a+)+$ on hostile text finish quickly under RE2."""
    rs = rules_from_text('rules: [{name: r, any: [{regex: "(a|aa)+$"}, {regex: "(a+)+b"}]}]')
    start = time.monotonic()
    match_article(art("a" * 100_000 + "!"), rs)
    assert time.monotonic() - start < 5  # generous; backtracking would take ages


def test_empty_matching_regex_is_an_error() -> None:
    with pytest.raises(RuleError, match="matches the empty string"):
        rules_from_text('rules: [{name: r, any: [{regex: "x*"}]}]')


# -- loading is all or nothing


def test_broken_directory_loads_nothing_and_lists_every_error(tmp_path: Path) -> None:
    (tmp_path / "entities").mkdir()
    (tmp_path / "entities" / "e.yaml").write_text("entities: {a: [Alpha]}\n", encoding="utf-8")
    (tmp_path / "good.yaml").write_text("rules: [{name: good, any: ['@a']}]\n", encoding="utf-8")
    (tmp_path / "bad.yaml").write_text(
        "rules:\n  - name: bad\n    any: ['@nope', {regex: '(x)\\1'}]\n    colour: red\n",
        encoding="utf-8",
    )
    (tmp_path / "evil.yaml").write_text(
        "rules: [{name: evil, any: [!!python/object/apply:os.system [echo]]}]\n", encoding="utf-8"
    )
    (tmp_path / "yaml.yaml").write_text("rules: [\n", encoding="utf-8")
    with pytest.raises(RuleError) as info:
        load_rules(tmp_path)
    errors = info.value.errors
    bad = str(tmp_path / "bad.yaml")
    assert any(e.startswith(f"{bad}:3: rules[0].any[0]: unknown entity @nope") for e in errors)
    assert any(e.startswith(f"{bad}:3: rules[0].any[1].regex: invalid") for e in errors)
    assert any(e.startswith(f"{bad}:4: rules[0].colour: unknown key") for e in errors)
    assert any(e.startswith(f"{tmp_path / 'yaml.yaml'}:2: : invalid YAML") for e in errors)
    assert any("tag:yaml.org,2002:python/object/apply" in e for e in errors)


# -- the automaton equals the brute-force reference


_ALPHA = "abcdeäöüßAEOUSsu"
_word = st.text(alphabet=_ALPHA, min_size=1, max_size=5)
_gap = st.sampled_from([" ", "-", "  ", "\n", ", ", "'", "\u2013", " - "])


@st.composite
def _term(draw: st.DrawFn) -> Term:
    words = draw(st.lists(_word, min_size=1, max_size=3))
    gaps = [draw(st.sampled_from([" ", "-", "- "])) for _ in words[1:]]
    text = words[0] + "".join(g + w for g, w in zip(gaps, words[1:], strict=True))
    return Term(text, case_sensitive=draw(st.booleans()), prefix=draw(st.booleans()))


ENGINES_HERE = AVAILABLE_ENGINES


@pytest.mark.parametrize("engine", ENGINES_HERE)
@settings(max_examples=300, deadline=None)
@given(
    st.lists(_term(), min_size=1, max_size=8, unique=True),
    st.lists(st.tuples(_word, _gap), max_size=30),
)
def test_automaton_equals_reference(
    engine: str, terms: list[Term], pieces: list[tuple[str, str]]
) -> None:
    """Word boundaries, case rules, prefixes, spellings and gaps: same occurrences."""
    assume(all(t.spellings() is not None for t in terms))  # the loader rejects the others
    index = TermIndex.from_terms(terms, engine)
    text = "".join(w + g for w, g in pieces)
    # Put each term into the text once too, so matches are common.
    text += " " + " | ".join(t.text for t in terms)
    p = prepare("", text)
    assert find_terms(p, index) == reference_find_terms(p, index.terms)


# Characters of one to four UTF-8 bytes, so that byte offsets (hyperscan)
# and character offsets part ways, several times per text.
_WIDE = ["a", "ä", "€", "\U0001f600", "中", "İ", "K", "ß", " ", "-", "\u2013", "\n"]


@pytest.mark.parametrize("engine", ENGINES_HERE)
@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([*_WIDE, "ice", "ICE", "Müller", "mueller", "strike"]), max_size=40)
)
def test_automaton_offsets_survive_wide_characters(engine: str, pieces: list[str]) -> None:
    """Emoji, CJK and the Kelvin sign before a term do not shift what is found."""
    terms = [
        Term("ice"),
        Term("ICE", case_sensitive=True),
        Term("Müller"),
        Term("stri", prefix=True),
    ]
    index = TermIndex.from_terms(terms, engine)
    p = prepare("Ärger \U0001f600", "".join(pieces) + " ice")
    assert find_terms(p, index) == reference_find_terms(p, index.terms)


def test_unknown_engine_is_an_error() -> None:
    with pytest.raises(ValueError, match="not available"):
        TermIndex.from_terms([Term("x")], "grep")


def test_both_engines_agree_on_the_shipped_pack() -> None:
    """The shipped rules give the same matches whichever engine compiled them."""
    from tests.conftest import SHARED

    rules = load_rules(Path(__file__).resolve().parent.parent / "rules")
    lines = (SHARED / "corpus" / "articles-dev.jsonl").read_text(encoding="utf-8").splitlines()
    articles = [json.loads(line) for line in lines[:80]]
    found = {}
    for engine in ENGINES_HERE:
        rules.__dict__["term_index"] = TermIndex.build(rules.rules, engine)
        found[engine] = [
            match_article(art(a["text"] or "", a["title"] or ""), rules) for a in articles
        ]
    assert len({json.dumps([[m.rule for m in ms] for ms in v]) for v in found.values()}) == 1
    first = next(iter(found.values()))
    assert all(v == first for v in found.values())
    assert any(first)


# -- the cheap pre-check never changes a result

_VOCAB = ["alpha", "beta", "gamma", "delta", "ICE", "Zug", "x"]
_RULES = """
rules:
  - name: nested
    all:
      - any: [[alpha], {all: [beta, gamma], within: sentence}]
      - [delta, x]
    none: [[gamma delta]]
  - name: vetoed-part
    any: [{any: [alpha], none: [beta]}, [gamma]]
  - name: at-least
    any: [[alpha], [beta], [gamma], {terms: [=ICE], unless_near: [Zug], window: 2}]
    at_least: 2
    field: text
  - name: weighted
    threshold: 2
    any: [{terms: [alpha], weight: 1}, {terms: [beta], weight: 1}, {terms: [x], weight: 3}]
  - name: window
    all: [[alpha], [delta]]
    within: 3
"""


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([*_VOCAB, ".", "and", "\n"]), max_size=25),
    st.lists(st.sampled_from(_VOCAB), max_size=3),
)
def test_required_terms_precheck_changes_nothing(words: list[str], title: list[str]) -> None:
    """Skipping rules whose required terms are absent gives exactly the full evaluation."""
    article = art(" ".join(words), " ".join(title))
    assert match_article(article, _FULL) == match_article(article, _CHECKED)


_CHECKED = rules_from_text(_RULES)
_FULL = rules_from_text(_RULES)
_FULL.term_index.required.clear()  # every rule is evaluated in full


def test_required_terms_are_a_necessary_condition() -> None:
    rules = rules_from_text(_RULES)
    index = rules.term_index
    by_name = {r.name: index.required[id(r)] for r in rules.rules}
    ids = {t.text: i for i, t in enumerate(index.terms)}
    assert frozenset({ids["delta"], ids["x"]}) in by_name["nested"]
    assert frozenset({ids["alpha"], ids["beta"], ids["gamma"]}) in by_name["nested"]
    # `any` needs a term of some part; `none` terms are never required.
    assert by_name["vetoed-part"] == (frozenset({ids["alpha"], ids["gamma"]}),)
    assert names(_RULES, "alpha delta") == ["nested", "vetoed-part", "window"]


@pytest.mark.parametrize("engine", ENGINES_HERE)
def test_matching_from_several_threads_at_once(engine: str) -> None:
    """Each thread scans with its own scratch space (hyperscan refuses a shared one)."""
    from concurrent.futures import ThreadPoolExecutor

    index = TermIndex.from_terms([Term("strike"), Term("ICE", case_sensitive=True)], engine)
    p = prepare("", "ICE workers strike. " * 8_000)
    expected = find_terms(p, index)
    assert len(expected[0]) == 8_000
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: find_terms(p, index), range(8)))
    assert all(r == expected for r in results)


@pytest.mark.parametrize(
    ("blocked", "engine"),
    [
        ((), ENGINES_HERE[0]),
        (("monitor._speedups",), "hyperscan" if "hyperscan" in ENGINES_HERE else "pyahocorasick"),
        (("monitor._speedups", "hyperscan"), "pyahocorasick"),
    ],
)
def test_default_engine_falls_back_to_what_is_installed(
    blocked: tuple[str, ...], engine: str
) -> None:
    """The C trie where the accelerator is built, else hyperscan, else pyahocorasick; same matches."""
    import subprocess
    import sys

    code = (
        f"import sys; sys.modules.update(dict.fromkeys({blocked!r}))\n"
        "from monitor.rules import DEFAULT_ENGINE, rules_from_text\n"
        "from monitor.match import match_article\n"
        "from monitor.types import Article\n"
        "rs = rules_from_text('rules: [{name: r, all: [[=ICE], [Mitarbeiter*]]}]')\n"
        "m = match_article(Article(url=None, title='', text='ICE-Mitarbeiterinnen'), rs)\n"
        "print(DEFAULT_ENGINE, rs.term_index.engine, m[0].terms)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split(None, 2) == [engine, engine, "('ICE', 'Mitarbeiter*')\n"]
