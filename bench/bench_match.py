"""Matching throughput: the default rule pack and a generated 10,000-term pack.

Matches article texts one at a time, on one core, and prints MB/s (UTF-8
bytes of title + text per second, CPU time) for the whole of
:func:`monitor.match.match_article` (prepare, automaton, rule logic,
evidence), the median of ``--rounds`` rounds. Two corpora:

- **pages** (primary; the issue's targets are judged here): the article
  texts trafilatura extracts from the real pages in ``../shared/corpus/pages``
  (about 6 KB each), extracted once before timing;
- **records** (secondary): the short dev records (``articles-dev.jsonl``
  openings and ``collective-actions-dev.jsonl`` descriptions, under 1 KB
  each), where the fixed cost per article dominates.

It then checks on the same texts that the automaton finds exactly what the
brute-force reference matcher finds. Targets (issue #3): >= 30 MB/s for the
default pack and >= 10 MB/s for 10,000 terms, on pages. Exit status 1 if a
target on pages is missed or the reference check differs.

    .venv/bin/python bench/bench_match.py [--rounds 5]
        [--engine wordtrie|hyperscan|pyahocorasick] [--pure-python]

The C accelerator ``monitor._speedups`` (built by ``pip install -e .`` where
a compiler is present) is used when it imported, with its word-start trie as
the engine; ``--pure-python`` measures the pure-Python path instead (the same
results, slower), with hyperscan or else pyahocorasick as the engine.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor import match  # noqa: E402
from monitor.match import find_terms, match_article, prepare, reference_find_terms  # noqa: E402
from monitor.rules import (  # noqa: E402
    DEFAULT_ENGINE,
    ENGINES,
    RuleSet,
    TermIndex,
    hyperscan,
    load_rules,
    rules_from_text,
)
from monitor.types import Article  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
#: MB/s on pages: (pack, target).
TARGETS = {"default pack": 30.0, "10,000-term pack": 10.0}


def articles() -> list[Article]:
    """The short dev records: labelled article openings and collective-action descriptions."""
    out = []
    with (CORPUS / "articles-dev.jsonl").open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.append(Article(url=None, title=d["title"] or "", text=d["text"] or ""))
    with (CORPUS / "collective-actions-dev.jsonl").open(encoding="utf-8") as f:
        for line in f:
            out.append(Article(url=None, title="", text=json.loads(line)["description"] or ""))
    return out


def page_texts() -> list[Article]:
    """The article texts of the real pages in the corpus (extracted once, before timing)."""
    from monitor.exceptions import ExtractError
    from monitor.extract import extract_page

    out = []
    for path in sorted((CORPUS / "pages").glob("*.html")):
        try:
            page = extract_page(path.read_bytes(), f"https://{path.stem}/")
        except ExtractError:
            continue
        out.append(Article(url=None, title=page.title or "", text=page.text))
    return out


def generated_pack(texts: list[Article], n: int = 10_000, seed: int = 1) -> RuleSet:
    """10,000 terms: real words and word pairs from the corpus, and invented names.

    A third of the terms are case-sensitive and a fifth are prefixes, so the
    pack exercises every code path; real words make sure many terms match.
    """
    return rules_from_text(generated_pack_text(texts, n, seed), "generated")


def generated_pack_text(texts: list[Article], n: int = 10_000, seed: int = 1) -> str:
    """The rules file of :func:`generated_pack` (bench/memory.py gives it to the daemon)."""
    rng = random.Random(seed)
    words = sorted({w for a in texts for w in re.findall(r"[^\W\d_]{4,}", a.text)})
    terms: set[str] = set()
    while len(terms) < n:
        kind = rng.random()
        if kind < 0.4:
            t = rng.choice(words)
        elif kind < 0.7:
            t = f"{rng.choice(words)} {rng.choice(words)}"
        else:
            t = "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiouäöü") for _ in range(4))
        if rng.random() < 0.33:
            t = "=" + t
        elif rng.random() < 0.2:
            t += "*"
        terms.add(t)
    groups = [sorted(terms)[i::10] for i in range(10)]
    return "rules:\n" + "".join(
        f"  - name: g{i}\n    any: [{json.dumps(g, ensure_ascii=False)}]\n"
        for i, g in enumerate(groups)
    )


def throughput(rs: RuleSet, texts: list[Article], rounds: int) -> float:
    """Median MB/s over ``rounds`` rounds of matching every text once."""
    size = sum(len((a.title + "\n" + a.text).encode("utf-8")) for a in texts)
    match_article(texts[0], rs)  # compile outside the timing
    speeds = []
    for _ in range(rounds):
        start = time.process_time()
        for a in texts:
            match_article(a, rs)
        speeds.append(size / (time.process_time() - start) / 1e6)
    return statistics.median(speeds)


def same_as_reference(rs: RuleSet, texts: list[Article]) -> tuple[int, int]:
    """(texts that differ, occurrences found) comparing automaton and reference."""
    index = rs.term_index
    differ = found = 0
    for a in texts:
        p = prepare(a.title, a.text)
        fast = find_terms(p, index)
        slow = reference_find_terms(p, index.terms)
        fast = {k: v for k, v in fast.items() if not index.terms[k].regex}
        differ += fast != slow
        found += sum(len(v) for v in slow.values())
    return differ, found


def with_engine(rs: RuleSet, engine: str) -> RuleSet:
    """``rs`` with its term index compiled for ``engine`` (fills the cached property)."""
    rs.__dict__["term_index"] = TermIndex.build(rs.rules, engine)
    return rs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--engine", choices=ENGINES, help=f"default: {DEFAULT_ENGINE}")
    ap.add_argument("--no-check", action="store_true", help="skip the (slow) reference check")
    ap.add_argument(
        "--pure-python", action="store_true", help="do not use the C accelerator monitor._speedups"
    )
    args = ap.parse_args(argv)
    if args.pure_python:
        match._speedups = None
        # The trie is the accelerator's: the Python path takes the best other engine.
        args.engine = args.engine or ("hyperscan" if hyperscan is not None else "pyahocorasick")
    args.engine = args.engine or DEFAULT_ENGINE
    print(
        "matching path: "
        + ("C accelerator (monitor._speedups)" if match._speedups else "pure Python")
    )
    dev = articles()
    pages = page_texts()
    packs: dict[str, RuleSet] = {}
    for label, make in (
        ("default pack", lambda: load_rules(ROOT / "rules")),
        ("10,000-term pack", lambda: generated_pack(dev)),
    ):
        rs = make()
        start = time.process_time()
        packs[label] = with_engine(rs, args.engine)
        compile_s = time.process_time() - start
        terms = len(rs.term_index.terms)
        print(f"{label}: {terms} terms, compiled for {args.engine} in {compile_s:.2f} s")
    ok = True
    corpora = (("pages (primary)", pages), ("records", dev))
    for corpus_label, texts in corpora:
        mb = sum(len((a.title + "\n" + a.text).encode("utf-8")) for a in texts) / 1e6
        print(
            f"{corpus_label}: {len(texts)} texts, {mb:.2f} MB per round, "
            f"median of {args.rounds} rounds"
        )
        for label, rs in packs.items():
            speed = throughput(rs, texts, args.rounds)
            line = f"  {label}: {speed:.1f} MB/s"
            if texts is pages:
                line += f" (target {TARGETS[label]:g})"
                ok = ok and speed >= TARGETS[label]
            if not args.no_check:
                differ, found = same_as_reference(rs, texts)
                line += f"; reference check: {found} occurrences, {differ} texts differ"
                ok = ok and differ == 0
            print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
