"""YAML -> validated, compiled :class:`RuleSet`; every error reported at once.

A rules file looks like this (``rules/tech-worker-activism.yaml`` documents
every key in its header)::

    terms:                       # optional named term lists, used as $name
      companies: [Google, Microsoft, GitHub]
    rules:
      - name: tech-worker-activism
        description: Employees act against their company's contracts.
        channels: [inbox]        # optional; omitted = every channel
        all:                     # every group must match
          - $companies           # a group: any term of a named list
          - [employees, Mitarbeiter*]   # a group: any of these terms
          - any: [open letter, petition]  # the same, spelled out
        any: []                  # if given, at least one group must match
        none:                    # no group may match
          - [hockey, =NHL]

Terms: a plain string is case-insensitive; a leading ``=`` makes it
case-sensitive (``=ICE``); a trailing ``*`` makes it a prefix (``Mitarbeiter*``
also matches ``Mitarbeiterinnen``); ``{term: ..., case_sensitive: true,
prefix: true}`` says the same at length. Terms match whole words: see
:func:`split_words` for what a word is.

Loading never runs code from the file: the YAML is only *composed* into nodes
(no constructor runs, so ``!!python/object`` cannot instantiate anything,
FAULTS C17), every tag outside the YAML core schema is rejected, anchors and
aliases are rejected (no alias bombs, C18) and files are capped at
:data:`MAX_FILE_BYTES` (C18).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from monitor.exceptions import RuleError

__all__ = [
    "MAX_FILE_BYTES",
    "Group",
    "Rule",
    "RuleSet",
    "Term",
    "load_rules",
    "rules_from_text",
    "split_words",
]

#: Largest rules file we read (FAULTS C18); real rule files are a few KB.
MAX_FILE_BYTES = 1_000_000

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
#: Deepest [ / { nesting we hand to the parser: ruamel.yaml recurses per level
#: and takes seconds to fail on a few thousand (C18); rules need three or four.
MAX_NESTING = 64
_RULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_LIST_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")

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


def _flow_depth(text: str) -> int:
    """The deepest bracket nesting in ``text``, counting quoted brackets too (a safe overcount)."""
    depth = deepest = 0
    for m in re.finditer(r"[\[\]{}]", text):
        depth = depth + 1 if m.group() in "[{" else max(0, depth - 1)
        deepest = max(deepest, depth)
    return deepest


@dataclass(frozen=True)
class Term:
    """One search term: a word or a phrase of words."""

    #: The term as written, without the ``=`` and ``*`` markers.
    text: str
    #: Match the exact letter case (``ICE`` but not ``ice`` or ``Ice``).
    case_sensitive: bool = False
    #: The last word may be longer (``Mitarbeiter*`` matches ``Mitarbeiterinnen``).
    prefix: bool = False

    def __post_init__(self) -> None:
        if not self.words:
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
    def folded(self) -> tuple[str, ...]:
        """The words as compared: casefolded unless the term is case-sensitive."""
        return self.words if self.case_sensitive else tuple(w.casefold() for w in self.words)

    @property
    def written(self) -> str:
        """The term in the short form a rule file uses (``=ICE``, ``Mitarbeiter*``)."""
        return ("=" if self.case_sensitive else "") + self.text + ("*" if self.prefix else "")

    def __str__(self) -> str:
        return self.written


@dataclass(frozen=True)
class Group:
    """A set of alternatives: the group matches when any of its terms does."""

    terms: tuple[Term, ...]


@dataclass(frozen=True)
class Rule:
    """A named rule: ``all`` groups, at least one ``any`` group, no ``none`` group."""

    name: str
    description: str
    #: Every group must match.
    all: tuple[Group, ...]
    #: If non-empty, at least one group must match.
    any: tuple[Group, ...]
    #: No group may match.
    none: tuple[Group, ...]
    #: Channel names to alert; ``()`` means every configured channel.
    channels: tuple[str, ...] = ()
    #: ``path:line`` where the rule was defined.
    source: str = "<code>"

    def terms(self) -> Iterator[Term]:
        """Every term of every group, ``none`` groups included."""
        for group in (*self.all, *self.any, *self.none):
            yield from group.terms


@dataclass(frozen=True)
class RuleSet:
    """The validated rules of one or more files, ready for :func:`monitor.match.match_article`."""

    rules: tuple[Rule, ...]
    #: The files the rules came from, in load order.
    files: tuple[str, ...] = ()

    def channel_names(self) -> set[str]:
        """Every channel name some rule alerts, for the config loader to check."""
        return {c for rule in self.rules for c in rule.channels}

    @cached_property
    def term_index(self) -> TermIndex:
        """The compiled lookup tables the matcher uses (built once, on first use)."""
        return TermIndex.build(self.rules)


@dataclass(frozen=True)
class TermIndex:
    """Terms keyed by their first word, so matching looks at each article word once.

    ``first_word`` maps a casefolded first word to the terms starting with it;
    ``prefixes`` maps a length to casefolded one-word prefixes of that length,
    which cannot be keyed by a whole word.
    """

    terms: tuple[Term, ...]
    #: Each term's position in ``terms``.
    ids: dict[Term, int]
    first_word: dict[str, tuple[int, ...]]
    prefixes: dict[int, dict[str, tuple[int, ...]]]

    @classmethod
    def build(cls, rules: Sequence[Rule]) -> TermIndex:
        """Index every distinct term of ``rules``."""
        ids: dict[Term, int] = {}
        for rule in rules:
            for term in rule.terms():
                ids.setdefault(term, len(ids))
        first: dict[str, list[int]] = {}
        prefixes: dict[int, dict[str, list[int]]] = {}
        for term, i in ids.items():
            key = term.words[0].casefold()
            if term.prefix and len(term.words) == 1:
                prefixes.setdefault(len(key), {}).setdefault(key, []).append(i)
            else:
                first.setdefault(key, []).append(i)
        return cls(
            terms=tuple(ids),
            ids=ids,
            first_word={k: tuple(v) for k, v in first.items()},
            prefixes={n: {k: tuple(v) for k, v in d.items()} for n, d in prefixes.items()},
        )


# --------------------------------------------------------------------------
# Loading


def load_rules(source: str | Path | Sequence[str | Path]) -> RuleSet:
    """Load and validate rules from a file, a directory, or a list of both.

    A directory contributes every ``*.yaml`` / ``*.yml`` file below it, in
    sorted order. Raises :class:`~monitor.exceptions.RuleError` listing every
    problem of every file, each as ``file:line: path: message``.

    >>> [r.name for r in load_rules("rules/").rules]  # doctest: +SKIP
    ['tech-worker-activism', ...]
    """
    sources = [source] if isinstance(source, str | Path) else list(source)
    label = ", ".join(str(s) for s in sources) or "<no rule files>"
    errors: list[str] = []
    files: list[Path] = []
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
        else:
            errors.append(f"{path}:0: : no such file or directory")
    if not sources:
        errors.append(f"{label}:0: : no rule files given")

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
    errors.extend(loader.errors)
    if errors:
        raise RuleError(label, errors)
    return RuleSet(rules=tuple(loader.rules), files=tuple(str(p) for p in files))


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
    if loader.errors:
        raise RuleError(name, loader.errors)
    return RuleSet(rules=tuple(loader.rules), files=(name,))


_RULE_KEYS = ("name", "description", "channels", "all", "any", "none")
_TERM_KEYS = ("term", "case_sensitive", "prefix")


class _Loader:
    """Walks composed YAML nodes, collecting rules and ``file:line: path: message`` errors."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.errors: list[str] = []
        self._names: dict[str, str] = {}  # rule name -> source, across files

    # -- plumbing

    def load_text(self, text: str, name: str) -> None:
        self._file = name
        self._seen: set[int] = set()
        depth = _flow_depth(text)
        if depth > MAX_NESTING:
            self.errors.append(f"{name}:0: : brackets nested {depth} deep; at most {MAX_NESTING}")
            return
        try:
            root = YAML(typ="rt").compose(text)
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
        self._file_top(root)

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

    def _source(self, node: Node) -> str:
        return f"{self._file}:{node.start_mark.line + 1}"

    # -- the schema

    def _file_top(self, root: Node) -> None:
        top = self._mapping(root, "", ("terms", "rules"), "with a `rules` list")
        if top is None:
            return
        lists: dict[str, tuple[Term, ...] | None] = {}
        if "terms" in top:
            lists = self._named_lists(top["terms"][1], "terms")
        if "rules" not in top:
            self._error(root, "rules", "missing; expected a list of rules")
            return
        rules_node = top["rules"][1]
        if not isinstance(rules_node, SequenceNode) or not rules_node.value:
            self._error(rules_node, "rules", "expected a non-empty list of rules")
            return
        for i, node in enumerate(rules_node.value):
            rule = self._rule(node, f"rules[{i}]", lists)
            if rule is not None:
                self.rules.append(rule)

    def _named_lists(self, node: Node, path: str) -> dict[str, tuple[Term, ...] | None]:
        out: dict[str, tuple[Term, ...] | None] = {}
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
            terms = []
            for j, t in enumerate(v.value):
                if isinstance(t, ScalarNode) and str(t.value).startswith("$"):
                    self._error(t, f"{where}[{j}]", "a named list cannot use another list")
                    continue
                term = self._term(t, f"{where}[{j}]")
                if term is not None:
                    terms.append(term)
            out[name] = tuple(terms)
        return out

    def _rule(
        self, node: Node, path: str, lists: dict[str, tuple[Term, ...] | None]
    ) -> Rule | None:
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
        description = ""
        if "description" in m:
            description = self._string(m["description"][1], f"{path}.description", "text") or ""
        channels: list[str] = []
        if "channels" in m:
            ch = m["channels"][1]
            if not isinstance(ch, SequenceNode):
                self._error(ch, f"{path}.channels", "expected a list of channel names")
                ok = False
            else:
                for j, c in enumerate(ch.value):
                    cname = self._string(c, f"{path}.channels[{j}]", "a channel name")
                    if cname is None or not cname.strip():
                        if cname is not None:
                            self._error(c, f"{path}.channels[{j}]", "empty channel name")
                        ok = False
                    elif cname not in channels:
                        channels.append(cname)
        groups: dict[str, tuple[Group, ...]] = {}
        for key in ("all", "any", "none"):
            groups[key] = ()
            if key in m:
                got = self._groups(m[key][1], f"{path}.{key}", lists)
                if got is None:
                    ok = False
                else:
                    groups[key] = got
        if ok and not groups["all"] and not groups["any"]:
            self._error(node, path, "a rule needs at least one group under `all` or `any`")
            ok = False
        if not ok or name is None:
            return None
        return Rule(
            name=name,
            description=description,
            all=groups["all"],
            any=groups["any"],
            none=groups["none"],
            channels=tuple(channels),
            source=self._source(node),
        )

    def _groups(
        self, node: Node, path: str, lists: dict[str, tuple[Term, ...] | None]
    ) -> tuple[Group, ...] | None:
        if not isinstance(node, SequenceNode):
            self._error(node, path, "expected a list")
            return None
        out = []
        ok = True
        for i, g in enumerate(node.value):
            group = self._group(g, f"{path}[{i}]", lists)
            if group is None:
                ok = False
            else:
                out.append(group)
        return tuple(out) if ok else None

    def _group(
        self, node: Node, path: str, lists: dict[str, tuple[Term, ...] | None]
    ) -> Group | None:
        items: list[Node]
        if isinstance(node, MappingNode):
            m = self._mapping(node, path, ("any",), "a group: {any: [terms]}")
            if m is None:
                return None
            if "any" not in m:
                self._error(node, f"{path}.any", "missing; a group is {any: [terms]}")
                return None
            inner = m["any"][1]
            if not isinstance(inner, SequenceNode):
                self._error(inner, f"{path}.any", "expected a list")
                return None
            path, items = f"{path}.any", list(inner.value)
        elif isinstance(node, SequenceNode):
            items = list(node.value)
        else:
            items = [node]  # one term, or one $list, is a group of its own
        if not items:
            self._error(node, path, "empty group; list at least one term")
            return None
        terms: list[Term] = []
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
                    ok = False  # its own error was reported where it was defined
                else:
                    terms.extend(lists[ref] or ())
                continue
            term = self._term(t, where)
            if term is None:
                ok = False
            else:
                terms.append(term)
        if not ok:
            return None
        # "protest*" and "Protest*" are one term unless case matters.
        seen: dict[tuple[str, bool, bool], Term] = {}
        for term in terms:
            key = term.text if term.case_sensitive else term.text.casefold()
            seen.setdefault((key, term.case_sensitive, term.prefix), term)
        return Group(tuple(seen.values()))

    def _term(self, node: Node, path: str) -> Term | None:
        case_sensitive = prefix = False
        if isinstance(node, MappingNode):
            m = self._mapping(node, path, _TERM_KEYS, "a term: {term: ..., case_sensitive: ...}")
            if m is None:
                return None
            if "term" not in m:
                self._error(node, f"{path}.term", "missing; write the term's text here")
                return None
            text = self._string(m["term"][1], f"{path}.term", "the term's text")
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
            where = f"{path}.term"
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
        return Term(text, case_sensitive=case_sensitive, prefix=prefix)
