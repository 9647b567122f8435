"""Type stubs for the optional C accelerator ``monitor/_speedups.c``."""

from collections.abc import Iterable
from typing import Any

class Collector:
    """Records hyperscan matches as (byte end, key id), for :func:`hits_from_collector`."""

    def __call__(self, key: int, start: int, end: int, flags: int, context: object) -> None: ...
    def count(self) -> int: ...

class KeyTable:
    """A TermIndex's ``key_info`` in flat arrays, for :func:`hits_from_collector`."""

    def __init__(self, key_info: tuple[Any, ...]) -> None: ...

def hits_from_collector(
    collector: Collector, data: bytes, low: str, canon: str, table: KeyTable
) -> dict[int, list[tuple[int, int]]]: ...
def hits_from_iter(
    candidates: Iterable[tuple[int, Any]], low: str, canon: str
) -> dict[int, list[tuple[int, int]]]: ...
def best_sentence(
    starts: list[int], occurrences: list[list[tuple[int, int]]], size: int
) -> tuple[int, int] | None: ...
def split_sentences(
    text: str, abbreviations: frozenset[str], months: frozenset[str]
) -> list[tuple[int, int]]: ...
def untidy(text: str) -> bool: ...
def by_group(
    hits: dict[int, list[tuple[int, int]]], term_groups: dict[int, tuple[int, ...]]
) -> dict[int, dict[int, list[tuple[int, int]]]]: ...
def terms_in_order(
    spans: dict[int, list[tuple[int, int]]], written: tuple[str, ...], shown: tuple[str, ...]
) -> tuple[str, ...]: ...

# Only where the Python version exports the case mapping it needs (3.11, 3.12).
def lower(text: str) -> str | None: ...
