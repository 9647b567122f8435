"""Precision, recall and F1 of a rule set on the labelled dev corpus.

Prints, per language and overall, the figures for ``articles-dev.jsonl`` and
the recall on ``collective-actions-dev.jsonl`` (every record a positive; the
``description`` is the text), for the given rules and for the baseline
keyword query the issue compares against. An article counts as found when a
rule that alerts by default matched it.

    .venv/bin/python bench/eval_rules.py [--rules rules/] [--corpus ../shared/corpus] [-v]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.match import match_article  # noqa: E402
from monitor.rules import RuleSet, load_rules, rules_from_text  # noqa: E402
from monitor.types import Article  # noqa: E402

#: The issue's baseline: (employees OR workers) AND (letter OR petition OR
#: protest ...) AND (one of 20 company names).
BASELINE = """
rules:
  - name: baseline
    all:
      - [employees, workers]
      - [letter, petition, protest, walkout, strike, resign, union]
      - [Google, Microsoft, Amazon, Apple, Facebook, Meta, Salesforce, GitHub, IBM, Oracle,
         Palantir, Uber, Tesla, Twitter, Netflix, Intel, Dell, Cisco, SAP, Lyft]
"""


def found(rs: RuleSet, title: str, text: str, language: str | None) -> bool:
    matches = match_article(Article(url=None, title=title, text=text, language=language), rs)
    return any(m.alert for m in matches)


def evaluate(rs: RuleSet, corpus: Path, verbose: bool = False) -> dict[str, float]:
    """Print and return the figures for ``rs``."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # tp, fp, fn
    with (corpus / "articles-dev.jsonl").open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            hit = found(rs, d["title"] or "", d["text"] or "", d.get("language"))
            label = bool(d["label"])
            for key in (d.get("language") or "?", "all"):
                c = counts[key]
                c[0] += hit and label
                c[1] += hit and not label
                c[2] += label and not hit
            if verbose and hit != label:
                kind = "FP" if hit else "FN"
                print(f"  {kind} [{d['language']}] {d['id']}: {d['title'][:90]}")
    out: dict[str, float] = {}
    for key in sorted(counts, key=lambda k: (k == "all", k)):
        tp, fp, fn = counts[key]
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        print(f"  articles {key:>3}: P={p:.3f} R={r:.3f} F1={f1:.3f} (tp={tp} fp={fp} fn={fn})")
        out[f"{key}.precision"], out[f"{key}.recall"], out[f"{key}.f1"] = p, r, f1
    total = hit_count = 0
    with (corpus / "collective-actions-dev.jsonl").open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            total += 1
            ok = found(rs, "", d["description"] or "", None)
            hit_count += ok
            if verbose and not ok:
                print(f"  CA miss {d['id']}: {(d['description'] or '')[:150]}")
    recall = hit_count / total if total else 0.0
    print(f"  collective actions: R={recall:.3f} ({hit_count}/{total})")
    out["collective.recall"] = recall
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", default=str(ROOT / "rules"))
    ap.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus"))
    ap.add_argument("-v", "--verbose", action="store_true", help="list every miss")
    args = ap.parse_args(argv)
    corpus = Path(args.corpus)
    print(f"rules: {args.rules}")
    figures = evaluate(load_rules(args.rules), corpus, args.verbose)
    print("baseline keyword query:")
    evaluate(rules_from_text(BASELINE, "baseline"), corpus)
    targets = (
        figures["all.precision"] >= 0.97
        and figures["all.recall"] >= 0.95
        and figures["collective.recall"] >= 0.90
    )
    print("dev targets (P>=0.97, R>=0.95, CA R>=0.90):", "met" if targets else "NOT met")
    return 0 if targets else 1


if __name__ == "__main__":
    sys.exit(main())
