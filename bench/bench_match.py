"""Matching throughput: the default rule pack and a generated 10,000-term pack.

Matches every article text of the dev corpus (``../shared/corpus``: the
labelled articles and the collective-action descriptions) one article at a
time, on one core, and prints MB/s (UTF-8 bytes of title + text per second)
for the whole of :func:`monitor.match.match_article` (automaton + rule
logic + evidence). It then checks on the same texts that the automaton finds
exactly what the brute-force reference matcher finds. Targets: >= 30 MB/s
for the default pack, >= 10 MB/s for 10,000 terms.

    .venv/bin/python bench/bench_match.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.match import find_terms, match_article, prepare, reference_find_terms  # noqa: E402
from monitor.rules import RuleSet, load_rules, rules_from_text  # noqa: E402
from monitor.types import Article  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"


def articles() -> list[Article]:
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
    text = "rules:\n" + "".join(
        f"  - name: g{i}\n    any: [{json.dumps(g, ensure_ascii=False)}]\n"
        for i, g in enumerate(groups)
    )
    return rules_from_text(text, "generated")


def throughput(rs: RuleSet, texts: list[Article], rounds: int) -> float:
    size = sum(len((a.title + "\n" + a.text).encode("utf-8")) for a in texts) * rounds
    match_article(texts[0], rs)  # compile outside the timing
    start = time.process_time()
    for _ in range(rounds):
        for a in texts:
            match_article(a, rs)
    return size / (time.process_time() - start) / 1e6


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    dev = articles()
    pages = page_texts()
    packs = {"default pack": load_rules(ROOT / "rules"), "10,000-term pack": generated_pack(dev)}
    ok = True
    for corpus_label, texts in (("corpus pages (extracted)", pages), ("dev records", dev)):
        mb = sum(len((a.title + "\n" + a.text).encode("utf-8")) for a in texts) / 1e6
        print(f"{corpus_label}: {len(texts)} texts, {mb:.2f} MB per round, {args.rounds} rounds")
        for label, target in (("default pack", 30.0), ("10,000-term pack", 10.0)):
            ok = _run(label, packs[label], texts, args.rounds, target) and ok
    return 0 if ok else 1


def _run(label: str, rs: RuleSet, texts: list[Article], rounds: int, target: float) -> bool:
    start = time.process_time()
    terms = len(rs.term_index.terms)
    compile_s = time.process_time() - start
    speed = throughput(rs, texts, rounds)
    differ, found = same_as_reference(rs, texts)
    print(
        f"  {label}: {terms} terms, {speed:.1f} MB/s (target {target:g}); "
        f"reference check: {found} occurrences, {differ} texts differ"
        + (f"; compiled in {compile_s:.2f} s" if compile_s > 0.01 else "")
    )
    return speed >= target and differ == 0


if __name__ == "__main__":
    sys.exit(main())
