"""extract.py: pages in tests/data/pages/ beside the text they must (not) yield,
refused content types (B27), the worker deadlines (B26: threads abandoned,
processes killed), and the shared corpus."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from monitor.exceptions import ExtractError
from monitor.extract import (
    MAX_PAGE_BYTES,
    ExtractedPage,
    ProcessExtractor,
    ThreadExtractor,
    extract_page,
    guess_language,
)

PAGES = Path(__file__).parent / "data" / "pages"
CORPUS_PAGES = Path(__file__).parent.parent.parent / "shared" / "corpus" / "pages"


def page(name: str) -> bytes:
    return (PAGES / name).read_bytes()


def test_news_article_main_text_without_boilerplate() -> None:
    result = extract_page(page("news_article.html"), "https://ledger.example/a", "text/html")
    assert result.title == "Engineers at Examplesoft petition against border contract"
    assert result.author == "Jordan Example"
    assert result.date == "2024-05-14"
    assert result.language == "en"
    assert "More than four hundred engineers at Examplesoft have signed a petition" in result.text
    assert "we want the right to refuse to work on them" in result.text
    assert result.text.count("\n") >= 4  # paragraphs stay lines
    for boilerplate in (
        "Subscribe to our newsletter",
        "Politics",
        "cookies",
        "Ice hockey team",
        "Quarterly earnings",
        "All rights reserved",
    ):
        assert boilerplate not in result.text


def test_german_latin1_page_decodes_and_is_de() -> None:
    """No <html lang>: the language comes from the stop-word guess; the meta
    charset (iso-8859-1) is honoured, so umlauts survive."""
    result = extract_page(page("german_latin1.html"), "https://zeitung.example/b", "text/html")
    assert result.language == "de"
    assert result.title == "Beschäftigte fordern Ausstieg aus Rüstungsauftrag"
    assert result.text.startswith("Mehr als zweihundert Beschäftigte eines Münchner")
    assert "Startseite" not in result.text and "Impressum" not in result.text
    assert result.date is None  # not guessed from the "© 2024" line


def test_header_charset_wins_over_guessing() -> None:
    body = "<html><body><article><p>" + "Größe und Übermut der Beschäftigten. " * 10
    content = (body + "</p></article></body></html>").encode("cp1252")
    result = extract_page(content, "https://x.example/c", "text/html; charset=windows-1252")
    assert result.text.startswith("Größe und Übermut")


@pytest.mark.parametrize(
    "content_type",
    ["application/pdf", "image/png", "application/octet-stream", "text/plain", "application/json"],
)
def test_non_html_content_types_are_refused_b27(content_type: str) -> None:
    with pytest.raises(ExtractError) as info:
        extract_page(page("news_article.html"), "https://x.example/d", content_type)
    assert info.value.reason == f"not an HTML page: {content_type}"
    assert info.value.url == "https://x.example/d"


@pytest.mark.parametrize(
    "content",
    [b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", b"\x89PNG\r\n\x1a\n\x00\x00", b"<html>\x00\x00\x00"],
)
def test_binary_bodies_labelled_html_are_refused_b27(content: bytes) -> None:
    with pytest.raises(ExtractError, match="binary content"):
        extract_page(content, "https://x.example/e", "text/html")


def test_empty_page() -> None:
    with pytest.raises(ExtractError) as info:
        extract_page(page("empty.html"), "https://x.example/f")
    assert info.value.reason == "empty page"


def test_page_without_article_text() -> None:
    with pytest.raises(ExtractError) as info:
        extract_page(page("nav_only.html"), "https://x.example/g")
    assert info.value.reason == "no article text found"


def test_oversized_page_is_refused_b26() -> None:
    content = b"<html><body>" + b"<div>" * (MAX_PAGE_BYTES // 5) + b"</body></html>"
    with pytest.raises(ExtractError, match="page over"):
        extract_page(content, "https://x.example/h")


def test_controls_are_stripped_from_extracted_text_b8() -> None:
    para = "Workers\x00 signed\u202e a letter\x1b against the contract. " * 6
    content = f"<html><body><article><p>{para}</p></article></body></html>".encode()
    result = extract_page(content, "https://x.example/i")
    assert "Workers signed a letter against the contract." in result.text
    assert not set(result.text) & {"\x00", "\u202e", "\x1b"}


def test_trafilatura_does_not_log_warnings_for_ordinary_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING), pytest.raises(ExtractError):
        extract_page(page("nav_only.html"), "https://x.example/j")
    assert [r for r in caplog.records if r.name.startswith("trafilatura")] == []


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        (
            "The workers said that they will not build the tools for the agency, and it was clear.",
            "en",
        ),
        (
            "Die Beschäftigten sagten, dass sie nicht für die Behörde arbeiten und es auch nicht wollen.",
            "de",
        ),
        ("Los trabajadores firmaron una carta contra el contrato.", None),
        ("ICE contract", None),
        ("", None),
    ],
)
def test_guess_language(text: str, lang: str | None) -> None:
    assert guess_language(text) == lang


# --- the worker --------------------------------------------------------------------------------


def test_thread_extractor_runs_the_real_extraction() -> None:
    extractor = ThreadExtractor(timeout=20)
    try:
        result = asyncio.run(
            extractor.extract(page("news_article.html"), "https://ledger.example/a", "text/html")
        )
    finally:
        extractor.close()
    assert result.language == "en"
    assert "four hundred engineers" in result.text


def test_thread_extractor_passes_extract_errors_through() -> None:
    extractor = ThreadExtractor(timeout=20)
    try:
        with pytest.raises(ExtractError, match="not an HTML page: application/pdf"):
            asyncio.run(extractor.extract(b"%PDF-1.7", "https://x.example/k", "application/pdf"))
    finally:
        extractor.close()


def test_thread_extractor_times_out_b26() -> None:
    """B26: a runaway extraction is abandoned at the deadline and the loop stays
    responsive; a later extraction on the same extractor still works."""
    release = threading.Event()

    def slow(content: bytes, url: str, content_type: str) -> ExtractedPage:
        if content == b"slow":
            release.wait(10)
        return ExtractedPage(title=None, text="fast", author=None, date=None, language=None)

    extractor = ThreadExtractor(timeout=0.3, max_workers=2, _extract=slow)

    async def scenario() -> tuple[float, ExtractedPage]:
        started = time.monotonic()
        with pytest.raises(ExtractError) as info:
            await extractor.extract(b"slow", "https://x.example/slow", "text/html")
        elapsed = time.monotonic() - started
        assert info.value.reason == "extraction timed out after 0.3s"
        assert info.value.url == "https://x.example/slow"
        return elapsed, await extractor.extract(b"ok", "https://x.example/ok", "text/html")

    try:
        elapsed, after = asyncio.run(scenario())
    finally:
        release.set()
        extractor.close()
    assert elapsed < 0.3 + 2
    assert after.text == "fast"


# --- the worker processes (B26) -----------------------------------------------------------------
# The injected extract functions run in worker processes, so they live at module
# level (pickled by name). ``content`` carries their instructions.


def _pid_then(content: bytes, url: str, content_type: str) -> ExtractedPage:
    """Write the worker's pid to the file named after b"hang:"/b"die:"/b"ok:", then act."""
    action, _, path = content.decode().partition(":")
    Path(path).write_text(str(os.getpid()))
    if action == "hang":
        time.sleep(3600)
    if action == "die":
        os._exit(3)
    if action == "bug":
        raise ValueError("a bug")
    return ExtractedPage(
        title=None, text=f"done in {os.getpid()}", author=None, date=None, language=None
    )


def _hog(content: bytes, url: str, content_type: str) -> ExtractedPage:
    """Allocate as much as ``content`` says (in MB), as a runaway lxml parse would."""
    block = bytearray(int(content) * 1024 * 1024)
    return ExtractedPage(title=None, text=str(len(block)), author=None, date=None, language=None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_process_extractor_runs_the_real_extraction() -> None:
    extractor = ProcessExtractor(timeout=20)
    try:
        result = asyncio.run(
            extractor.extract(page("news_article.html"), "https://ledger.example/a", "text/html")
        )
        with pytest.raises(ExtractError) as info:
            asyncio.run(extractor.extract(b"%PDF-1.7", "https://x.example/k", "application/pdf"))
    finally:
        extractor.close()
    assert result.title == "Engineers at Examplesoft petition against border contract"
    assert "four hundred engineers" in result.text
    # ExtractError crosses the process boundary with its url and reason.
    assert (info.value.url, info.value.reason) == (
        "https://x.example/k",
        "not an HTML page: application/pdf",
    )


def test_process_extractor_kills_a_runaway_worker_b26(tmp_path: Path) -> None:
    """B26: a pathological page costs at most its time limit: the worker is
    killed (not abandoned), and the next page gets a fresh worker."""
    extractor = ProcessExtractor(timeout=0.5, max_workers=2, _extract=_pid_then)
    hang_pid, ok_pid = tmp_path / "hang.pid", tmp_path / "ok.pid"

    async def scenario() -> tuple[float, ExtractedPage]:
        started = time.monotonic()
        with pytest.raises(ExtractError) as info:
            await extractor.extract(f"hang:{hang_pid}".encode(), "https://x.example/s", "text/html")
        elapsed = time.monotonic() - started
        assert info.value.reason == "extraction timed out after 0.5s"
        return elapsed, await extractor.extract(
            f"ok:{ok_pid}".encode(), "https://x.example/ok", "text/html"
        )

    try:
        elapsed, after = asyncio.run(scenario())
        pid = int(hang_pid.read_text())
        assert not _alive(pid), "the runaway worker still runs"
        assert after.text == f"done in {ok_pid.read_text()}"
        assert int(ok_pid.read_text()) != pid
        assert extractor.killed == 1
    finally:
        extractor.close()
    # Generous: the limit plus process start-up on a loaded machine.
    assert elapsed < 0.5 + 10


def test_process_extractor_survives_a_dying_worker_and_a_buggy_extract(tmp_path: Path) -> None:
    extractor = ProcessExtractor(timeout=20, _extract=_pid_then)
    try:
        with pytest.raises(ExtractError, match="extraction worker died"):
            asyncio.run(extractor.extract(f"die:{tmp_path / 'd'}".encode(), "u", "text/html"))
        with pytest.raises(ExtractError, match="extraction failed: ValueError"):
            asyncio.run(extractor.extract(f"bug:{tmp_path / 'b'}".encode(), "u", "text/html"))
        result = asyncio.run(extractor.extract(f"ok:{tmp_path / 'o'}".encode(), "u", "text/html"))
    finally:
        extractor.close()
    assert result.text.startswith("done in ")
    assert extractor.killed == 1  # the dead one; the buggy call's worker lives on


def test_process_extractor_reuses_workers_and_close_kills_them(tmp_path: Path) -> None:
    extractor = ProcessExtractor(timeout=20, max_workers=2, _extract=_pid_then)

    async def four() -> list[ExtractedPage]:
        return list(
            await asyncio.gather(
                *(
                    extractor.extract(f"ok:{tmp_path / str(i)}".encode(), "u", "text/html")
                    for i in range(4)
                )
            )
        )

    try:
        asyncio.run(four())
        pids = {int((tmp_path / str(i)).read_text()) for i in range(4)}
        assert 1 <= len(pids) <= 2  # at most max_workers processes, reused
        assert all(_alive(p) for p in pids)
    finally:
        extractor.close()
    assert not any(_alive(p) for p in pids)
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(extractor.extract(b"ok:x", "u", "text/html"))


def test_process_extractor_refuses_oversized_pages_without_a_worker() -> None:
    extractor = ProcessExtractor(timeout=20)
    try:
        with pytest.raises(ExtractError, match="page over"):
            asyncio.run(extractor.extract(b"x" * (MAX_PAGE_BYTES + 1), "u", "text/html"))
        assert extractor.killed == 0
    finally:
        extractor.close()


# --- the shared corpus -------------------------------------------------------------------------


@pytest.mark.skipif(not CORPUS_PAGES.is_dir(), reason="../shared/corpus is not beside the project")
def test_corpus_pages_extract_or_raise_extract_error() -> None:
    extracted = 0
    for path in sorted(CORPUS_PAGES.iterdir()):
        try:
            result = extract_page(path.read_bytes(), f"https://corpus.example/{path.name}")
        except ExtractError:
            continue
        extracted += 1
        assert len(result.text) >= 100, path.name
        assert result.language is None or len(result.language) in (2, 3), path.name
    assert extracted >= 100


def test_process_extractor_caps_a_workers_memory_b26() -> None:
    """B26: a page that makes extraction allocate without bound fails alone, with a
    clear reason, instead of growing until the OOM killer picks a process; its
    worker is retired and the next page is extracted as usual."""
    extractor = ProcessExtractor(timeout=20, memory_limit=512 * 1024 * 1024, _extract=_hog)
    try:
        with pytest.raises(ExtractError) as info:
            asyncio.run(extractor.extract(b"2048", "https://x.example/big", "text/html"))
        small = asyncio.run(extractor.extract(b"16", "https://x.example/ok", "text/html"))
    finally:
        extractor.close()
    assert info.value.reason == "extraction needed more than the worker's 512 MB"
    assert small.text == str(16 * 1024 * 1024)
    assert extractor.killed == 1


def test_process_extractor_replaces_a_worker_after_max_jobs_pages(tmp_path: Path) -> None:
    """Heaps only grow: after ``max_jobs`` pages a worker is replaced by a fresh
    one (not counted as killed), and the old one is gone."""
    extractor = ProcessExtractor(timeout=20, max_workers=1, max_jobs=2, _extract=_pid_then)

    async def five() -> None:
        for i in range(5):
            await extractor.extract(f"ok:{tmp_path / str(i)}".encode(), "u", "text/html")

    try:
        asyncio.run(five())
        pids = [int((tmp_path / str(i)).read_text()) for i in range(5)]
    finally:
        extractor.close()
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert not _alive(pids[0]) and not _alive(pids[2])
    assert extractor.killed == 0
