"""Rule loading: the YAML form, validation with every error at once, and safety."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.exceptions import RuleError
from monitor.rules import MAX_FILE_BYTES, Group, Rule, RuleSet, Term, load_rules, rules_from_text

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "rules"

GOOD = """\
terms:
  companies: [Salesforce, Microsoft]
rules:
  - name: strict
    description: workers act
    channels: [inbox, slack]
    all:
      - $companies
      - [employees, Mitarbeiter*]
      - any: [open letter, {term: ICE, case_sensitive: true}]
    any:
      - =CBP
    none:
      - [ice hockey]
"""


def test_good_file_builds_the_documented_structure() -> None:
    rs = rules_from_text(GOOD, "good.yaml")
    assert rs.files == ("good.yaml",)
    (rule,) = rs.rules
    assert rule.name == "strict"
    assert rule.description == "workers act"
    assert rule.channels == ("inbox", "slack")
    assert rule.source == "good.yaml:4"
    assert rule.all == (
        Group((Term("Salesforce"), Term("Microsoft"))),
        Group((Term("employees"), Term("Mitarbeiter", prefix=True))),
        Group((Term("open letter"), Term("ICE", case_sensitive=True))),
    )
    assert rule.any == (Group((Term("CBP", case_sensitive=True),)),)
    assert rule.none == (Group((Term("ice hockey"),)),)
    assert rs.channel_names() == {"inbox", "slack"}


def test_term_long_form_with_prefix_flag() -> None:
    rs = rules_from_text(
        "rules: [{name: r, all: [[{term: Beschäftigt, prefix: true, case_sensitive: false}]]}]"
    )
    assert rs.rules[0].all[0].terms == (Term("Beschäftigt", prefix=True),)


def test_same_term_in_two_cases_is_kept_once() -> None:
    rs = rules_from_text("rules: [{name: r, all: [[protest*, Protest*, =ICE, ICE]]}]")
    assert rs.rules[0].all[0].terms == (
        Term("protest", prefix=True),
        Term("ICE", case_sensitive=True),
        Term("ICE"),
    )


def test_channels_default_to_every_channel() -> None:
    rs = rules_from_text("rules: [{name: r, any: [Google]}]")
    assert rs.rules[0].channels == ()
    assert rs.channel_names() == set()


def test_several_errors_are_all_reported_with_file_line_and_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        """\
terms:
  companies: [Google, "*"]
rules:
  - name: ok
    all: [$companies]
  - name: ok
    all: Google
    colour: red
  - name: third
    all:
      - [Google, ""]
      - $nowhere
    none: [[{term: x, case_sensitive: maybe}]]
  - description: no name and no groups
""",
        encoding="utf-8",
    )
    with pytest.raises(RuleError) as info:
        load_rules(path)
    p = str(path)
    assert info.value.path == p
    assert set(info.value.errors) == {
        f"{p}:2: terms.companies[1]: empty term '': it needs letters or digits",
        f"{p}:6: rules[1].name: duplicate rule name 'ok' (first at {p}:4)",
        f"{p}:7: rules[1].all: expected a list",
        f"{p}:8: rules[1].colour: unknown key; expected one of: "
        "name, description, category, tags, severity, languages, channels, mode, schedule, "
        "timezone, updates, alert, threshold, all, any, none, at_least, field, within",
        f"{p}:11: rules[2].all[0][1]: empty term '': it needs letters or digits",
        f"{p}:12: rules[2].all[1]: unknown term list $nowhere (known: $companies)",
        f"{p}:13: rules[2].none[0][0].case_sensitive: expected true or false",
        f"{p}:14: rules[3].name: missing; every rule needs a name",
        f"{p}:14: rules[3]: a rule needs at least one group under `all` or `any`",
    }
    # Every line has the documented shape, and str() shows them all.
    for line in info.value.errors:
        assert re.fullmatch(r".+:\d+: [\w.\[\]]*: .+", line), line
    assert str(info.value).count("\n") == len(info.value.errors) - 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "<string>:0: : the file is empty"),
        ("- a\n- b\n", "<string>:1: : expected a mapping"),
        ("rules: []\n", "<string>:1: rules: expected a non-empty list of rules"),
        ("terms: {}\n", "<string>:1: rules: missing"),
        (
            "rules: [{name: r, none: [[x]]}]",
            "<string>:1: rules[0]: a rule needs at least one group",
        ),
        ("rules: [{name: r, all: [[]]}]", "<string>:1: rules[0].all[0]: empty group"),
        ("rules: [{name: r, all: [[a*b]]}]", "<string>:1: rules[0].all[0][0]: * is only allowed"),
        ("rules: [{name: r, all: [[=]]}]", "<string>:1: rules[0].all[0][0]: empty term"),
        ("rules: [{name: r, all: [[~]]}]", "<string>:1: rules[0].all[0][0]: expected a term"),
        ("rules: [{name: 'bad name!', all: [x]}]", "<string>:1: rules[0].name: a name is"),
        ("rules: [{name: r, all: [x], all: [y]}]", "<string>:1: rules[0].all: duplicate key"),
        (
            "rules: [{name: r, channels: inbox, all: [x]}]",
            "<string>:1: rules[0].channels: expected",
        ),
        ("rules: [{name: r, all: [{anyy: [x]}]}]", "<string>:1: rules[0].all[0].anyy: unknown key"),
        ("terms: {a: [$b]}\nrules: [{name: r, all: [$a]}]", "<string>:1: terms.a[0]: a named list"),
        ("rules: [x\n", "<string>:2: : invalid YAML"),
    ],
)
def test_each_kind_of_error_is_reported(text: str, expected: str) -> None:
    with pytest.raises(RuleError) as info:
        rules_from_text(text)
    assert any(e.startswith(expected) for e in info.value.errors), info.value.errors


def test_python_tags_are_rejected_and_never_run(tmp_path: Path) -> None:
    """C17: a !!python/object tag is an error; nothing is constructed."""
    marker = tmp_path / "pwned"
    text = (
        "rules:\n"
        "  - name: r\n"
        f"    all: [[!!python/object/apply:os.system ['touch {marker}']]]\n"
        "    description: !!python/name:os.system\n"
    )
    with pytest.raises(RuleError) as info:
        rules_from_text(text)
    assert (
        "<string>:3: rules[0].all[0][0]: tag tag:yaml.org,2002:python/object/apply:os.system"
        in (" ".join(info.value.errors))
    )
    assert any(e.startswith("<string>:4: rules[0].description: tag ") for e in info.value.errors)
    assert not marker.exists()


def test_alias_bomb_is_rejected_quickly() -> None:
    """C18: anchors and aliases are refused, so a billion-laughs file costs nothing."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}] " for i in range(1, 30)]
    lines += ["rules: [{name: r, all: [*a29]}]"]
    with pytest.raises(RuleError) as info:
        rules_from_text("\n".join(lines))
    assert any("anchors and aliases" in e for e in info.value.errors)


def test_oversized_file_is_rejected_without_parsing(tmp_path: Path) -> None:
    """C18: a rules file over the cap is refused by size."""
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * (MAX_FILE_BYTES // 10 + 1), encoding="utf-8")
    with pytest.raises(RuleError) as info:
        load_rules(path)
    assert info.value.errors[0].startswith(f"{path}:0: : file is ")
    with pytest.raises(RuleError):
        rules_from_text("#" * (MAX_FILE_BYTES + 1))


def test_directory_loads_yaml_and_yml_recursively_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.yml").write_text("rules: [{name: b, any: [x]}]", encoding="utf-8")
    (tmp_path / "a.yaml").write_text("rules: [{name: a, any: [x]}]", encoding="utf-8")
    (tmp_path / "sub" / "c.yaml").write_text("rules: [{name: c, any: [x]}]", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("rules: nonsense", encoding="utf-8")
    rs = load_rules(tmp_path)
    assert [r.name for r in rs.rules] == ["a", "b", "c"]
    assert rs.files == tuple(str(tmp_path / n) for n in ("a.yaml", "b.yml", "sub/c.yaml"))
    # A list of sources: names must stay unique across files.
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path / "a.yaml", str(tmp_path / "a.yaml")])
    assert "duplicate rule name 'a'" in info.value.errors[0]


def test_missing_file_and_empty_directory_are_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path / "nope.yaml", tmp_path / "empty"])
    assert info.value.errors == (
        f"{tmp_path / 'nope.yaml'}:0: : no such file or directory",
        f"{tmp_path / 'empty'}:0: : no *.yaml or *.yml files in this directory",
    )


def test_non_utf8_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("rules: [{name: r, any: [Müller]}]".encode("latin-1"))
    with pytest.raises(RuleError, match="not UTF-8"):
        load_rules(path)


def test_term_needs_a_word() -> None:
    with pytest.raises(ValueError, match="no letters or digits"):
        Term(" - ")


def test_ruleset_built_in_code_works_without_a_file() -> None:
    rule = Rule("r", "", all=(Group((Term("x"),)),), any=(), none=(), channels=("a",), source="x:1")
    assert RuleSet((rule,)).channel_names() == {"a"}


def test_shipped_rule_file_loads_and_documents_every_key() -> None:
    """The default rules load, and the header documents each key the loader accepts."""
    rs = load_rules(RULES_DIR)
    assert {r.name for r in rs.rules} >= {"tech-worker-activism"}
    header = (RULES_DIR / "tech-worker-activism.yaml").read_text(encoding="utf-8")
    for key in ("terms:", "rules:", "name:", "description:", "channels:", "all:", "any:", "none:"):
        assert f"#   {key}" in header or f"#     - {key}" in header or f"#       {key}" in header, (
            key
        )
    for form in ("=ICE", "Mitarbeiter*", "case_sensitive", "prefix", "$workers"):
        assert form in header, form


# Arbitrary text, and text that looks like a rules file, never crash the loader.
_yamlish = st.lists(
    st.sampled_from(
        [
            "rules:",
            "terms:",
            "  - name: r",
            "    all:",
            "      - [a, b]",
            "      - $x",
            "  x: [a]",
            "- ",
            "{",
            "}",
            "[",
            "]",
            ": ",
            "&a ",
            "*a",
            "!!python/object:x ",
            "!!binary ",
            "? ",
            "'",
            '"',
            "#",
            "\t",
            "=",
            "*",
            "~",
            "null",
            "1",
            "-",
            "\n",
            "  ",
        ]
    ),
    max_size=40,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), _yamlish))
def test_loading_never_crashes(text: str) -> None:
    """Any text gives a RuleSet or a RuleError, never another exception."""
    try:
        rs = rules_from_text(text)
    except RuleError as e:
        assert e.errors
        assert all(re.match(r"<string>:\d+: ", line) for line in e.errors)
    else:
        assert rs.rules


@pytest.mark.parametrize("text", ["[" * 200_000, "a:\n" + "  - " * 3000 + "x"])
def test_deep_nesting_is_an_error_not_a_crash(text: str) -> None:
    """C18: deeply nested flow or block collections are refused quickly."""
    with pytest.raises(RuleError, match="nested"):
        rules_from_text(text)
