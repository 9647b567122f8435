"""Article HTML -> :class:`ExtractedPage` (trafilatura), in a bounded worker.

``extract_page`` is the synchronous, pure step: bytes we fetched in, main
text and metadata out, or :class:`ExtractError`. It never lets trafilatura
fetch anything (no ``fetch_url``).

``ProcessExtractor`` (the one the pipeline uses) runs it in a few worker
processes and kills a worker that passes its time limit, so a pathological
page costs at most that limit (FAULTS B26); the killed worker is replaced by
a fresh one. Workers come from a ``forkserver`` that has already imported
trafilatura, so starting one costs a fork, not an import.

``ThreadExtractor`` runs it in threads: cheaper, but a thread cannot be
killed. Past the deadline the caller gets ``ExtractError`` at once, while the
thread runs on until trafilatura returns, holding one of ``max_workers``
slots. Input is capped (``MAX_PAGE_BYTES``) to keep such runaways short.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import multiprocessing
import queue
import re
import resource
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from monitor.exceptions import ExtractError
from monitor.parse import strip_controls

__all__ = [
    "MAX_PAGE_BYTES",
    "MIN_TEXT_CHARS",
    "ExtractedPage",
    "Extractor",
    "ProcessExtractor",
    "ThreadExtractor",
    "extract_page",
]

#: Pages larger than this are refused rather than parsed (B26).
MAX_PAGE_BYTES = 5 * 1024 * 1024
#: Seconds a new extraction worker may take to start (forkserver: milliseconds;
#: the very first start, which launches the forkserver, about 0.6 s here).
WORKER_START_S = 60.0
#: Pages one extraction worker takes before it is replaced by a fresh one.
WORKER_MAX_PAGES = 100
#: Address-space cap of each extraction worker (RLIMIT_AS). Measured: a worker
#: peaks at 70 MB of address space over the largest corpus pages (0.9 MB each),
#: so this leaves room for any honest page up to MAX_PAGE_BYTES.
WORKER_MEMORY_LIMIT = 1024 * 1024 * 1024
#: Less main text than this is navigation or a teaser, not an article; the
#: pipeline falls back to the feed's summary. The shortest corpus article has 151.
MIN_TEXT_CHARS = 100

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})

# trafilatura logs "discarding data: None" and similar at WARNING for ordinary
# pages without an article; those outcomes reach the caller as ExtractError.
for _name in ("trafilatura", "htmldate", "courlan", "justext"):
    logging.getLogger(_name).setLevel(logging.ERROR)


@dataclass(frozen=True)
class ExtractedPage:
    """The main text and metadata of one article page."""

    title: str | None
    #: The main text, paragraphs separated by newlines, control characters removed.
    text: str
    author: str | None
    #: Publication date as trafilatura found it (``YYYY-MM-DD``), if any.
    date: str | None
    #: ISO 639-1 code (``en``, ``de``...), or None when unsure.
    language: str | None


def _media_type(content_type: str) -> tuple[str, str | None]:
    media, _, params = content_type.partition(";")
    charset = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", params, re.IGNORECASE)
    return media.strip().lower(), charset.group(1) if charset else None


_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
_HTML_LANG = re.compile(rb"<html\b[^>]*?\blang\s*=\s*[\"']?([a-zA-Z]{2,3})\b", re.IGNORECASE)


def _decode(content: bytes, header_charset: str | None) -> str | bytes:
    """The page as text, by the header's or the page's declared charset.

    Falls back to the bytes, for trafilatura's own detection, when neither
    is declared or the declared one does not decode the bytes.
    """
    meta = _META_CHARSET.search(content[:4096])
    for charset in (header_charset, meta.group(1).decode("ascii") if meta else None):
        if not charset:
            continue
        try:
            codecs.lookup(charset)
            text = content.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
        # Drop an XML/meta encoding declaration's power: lxml refuses a str
        # that still carries <?xml ... encoding=...?>.
        return re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1)
    return content


def _looks_binary(content: bytes) -> bool:
    # Known binary signatures, or NUL bytes as over a tenth of the start (a
    # stray NUL in real HTML is stripped later; UTF-16 has a BOM).
    head = content[:4096]
    if head.startswith((b"%PDF", b"PK\x03\x04", b"\x89PNG", b"GIF8", b"\xff\xd8\xff")):
        return True
    return not head.startswith((b"\xff\xfe", b"\xfe\xff")) and head.count(0) * 10 > len(head)


_EN_STOP_WORDS = (
    "the and of to a in is that for it on with as was are be by this have from or "
    "at not but an they which their has were said its been who will would"
)
_DE_STOP_WORDS = (
    "der die und das ist nicht ein eine zu den von mit sich des auf für im dem "
    "auch es an als wird bei sie wie aus hat nach oder werden einer noch sind"
)
_STOP_WORDS = {"en": frozenset(_EN_STOP_WORDS.split()), "de": frozenset(_DE_STOP_WORDS.split())}


def guess_language(text: str) -> str | None:
    """``en`` or ``de`` by stop-word counts, or None when the text is short or mixed.

    >>> guess_language("Die Beschäftigten haben sich auf einen Brief an den Vorstand geeinigt")
    'de'
    """
    words = re.findall(r"[^\W\d_]+", text[:20_000].lower())
    counts = {lang: sum(w in stops for w in words) for lang, stops in _STOP_WORDS.items()}
    (best, top), (_, second) = sorted(counts.items(), key=lambda kv: -kv[1])[:2]
    # At least 5 hits and twice the runner-up: otherwise we do not know.
    return best if top >= 5 and top >= 2 * second else None


def _clean(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = " ".join(strip_controls(value).split())
    return text or None


def extract_page(content: bytes, url: str, content_type: str = "text/html") -> ExtractedPage:
    """Extract the main text of an article page with trafilatura.

    ``content_type`` is the response's Content-Type header; only HTML and
    XHTML are extracted (B27), and its charset is honoured. Raises
    :class:`ExtractError` for other types, binary or empty bodies, pages over
    ``MAX_PAGE_BYTES`` and pages with no main text.
    """
    media, charset = _media_type(content_type)
    if media and media not in _HTML_TYPES:
        raise ExtractError(url, f"not an HTML page: {media}")
    if not content.strip():
        raise ExtractError(url, "empty page")
    if len(content) > MAX_PAGE_BYTES:
        raise ExtractError(url, f"page over {MAX_PAGE_BYTES} bytes")
    if _looks_binary(content):
        raise ExtractError(url, "not an HTML page: binary content")

    # Imported here: the daemon itself never extracts (its workers do, and the
    # forkserver preloads trafilatura for them), so it saves ~20 MB of imports.
    import trafilatura

    try:
        document = trafilatura.bare_extraction(
            _decode(content, charset),
            url=url,
            include_comments=False,
            include_tables=True,
            include_images=False,
            include_links=False,
            with_metadata=True,
            # Measured on ../shared/corpus/pages: precision keeps 99% of the
            # text of balanced mode; where they differ, balanced had kept a
            # cookie banner or template code. Boilerplate (related headlines)
            # is what makes false alerts, so we favour precision.
            favor_precision=True,
            # Without the extensive search htmldate stops guessing "YYYY-01-01"
            # from copyright lines (14 of 110 corpus pages).
            date_extraction_params={"extensive_search": False, "original_date": True},
        )
    except Exception as e:  # trafilatura/lxml choking on hostile markup
        raise ExtractError(url, f"extraction failed: {type(e).__name__}") from e
    if document is None or isinstance(document, dict):
        raise ExtractError(url, "no article text found")
    lines = (" ".join(line.split()) for line in strip_controls(document.text or "").splitlines())
    text = "\n".join(line for line in lines if line)
    if len(text) < MIN_TEXT_CHARS:
        raise ExtractError(url, "no article text found")

    language = _clean(document.language)
    if language is None:
        lang = _HTML_LANG.search(content[:8192])
        language = lang.group(1).decode("ascii") if lang else None
    if language is None:
        language = guess_language(text)
    language = language.lower().split("-")[0].split("_")[0] if language else None

    return ExtractedPage(
        title=_clean(document.title),
        text=text,
        author=_clean(document.author),
        date=_clean(document.date),
        language=language,
    )


class Extractor(Protocol):
    """Turns a fetched page into an :class:`ExtractedPage`, or raises ExtractError."""

    async def extract(self, content: bytes, url: str, content_type: str) -> ExtractedPage: ...


class ThreadExtractor:
    """Runs :func:`extract_page` in a small thread pool, bounded by ``timeout`` seconds.

    A timed-out extraction raises ``ExtractError(url, "extraction timed out
    after Ns")``; its thread cannot be stopped and finishes in the background.

    >>> import asyncio
    >>> ex = ThreadExtractor(timeout=5)
    >>> page = asyncio.run(ex.extract(b"<html><body><article><p>" + b"Text. " * 60
    ...     + b"</p></article></body></html>", "https://example.org/a", "text/html"))
    >>> page.text[:10]
    'Text. Text'
    >>> ex.close()
    """

    def __init__(
        self,
        *,
        timeout: float = 20.0,
        max_workers: int = 2,
        _extract: Callable[[bytes, str, str], ExtractedPage] = extract_page,
    ) -> None:
        self.timeout = timeout
        self._extract = _extract
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="extract")

    async def extract(self, content: bytes, url: str, content_type: str) -> ExtractedPage:
        """Extract off the event loop; raise ExtractError on failure or timeout."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self._extract, content, url, content_type)
        try:
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            raise ExtractError(url, f"extraction timed out after {self.timeout:g}s") from None

    def close(self) -> None:
        """Stop accepting work; running extractions are not waited for."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _worker_main(
    conn: Connection,
    extract: Callable[[bytes, str, str], ExtractedPage],
    memory_limit: int | None = None,
) -> None:
    """A worker process: extract one page per message until the parent goes away.

    ``memory_limit`` caps the worker's address space (RLIMIT_AS), so a page that
    makes lxml allocate without bound fails with MemoryError in the worker
    instead of waking the kernel's OOM killer, which might pick the daemon.
    """
    if memory_limit is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    try:
        conn.send(("ready", None))
    except (BrokenPipeError, OSError):
        return
    while True:
        try:
            content, url, content_type = conn.recv()
        except (EOFError, OSError):
            return  # the parent closed the pipe or died
        try:
            reply: tuple[str, Any] = ("ok", extract(content, url, content_type))
        except ExtractError as e:
            # Exceptions with a custom __init__ do not unpickle: send the reason.
            reply = ("error", e.reason)
        except MemoryError:
            mb = (memory_limit or 0) // (1024 * 1024)
            # The heap may be in a bad way: the parent retires this worker.
            reply = ("retire", f"extraction needed more than the worker's {mb} MB")
        except Exception as e:  # a bug in an injected extract; the parent reports it
            reply = ("error", f"extraction failed: {type(e).__name__}")
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(
        self,
        ctx: Any,
        extract: Callable[[bytes, str, str], ExtractedPage],
        memory_limit: int | None,
    ) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process: BaseProcess = ctx.Process(
            target=_worker_main,
            args=(child, extract, memory_limit),
            name="monitor-extract",
            daemon=True,
        )
        self.process.start()
        child.close()
        self._dead = False
        #: Pages this worker has extracted.
        self.jobs = 0
        self.ready = False

    def wait_ready(self, timeout: float) -> bool:
        """Wait for the worker's first message: it runs and has imported what it needs."""
        if not self.ready and self.conn.poll(timeout):
            self.ready = self.conn.recv() == ("ready", None)
        return self.ready

    def kill(self) -> None:
        """Kill the process and reap it; safe to call twice."""
        if self._dead:
            return
        self._dead = True
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        with contextlib.suppress(ValueError):  # still running after SIGKILL+5s: leave it
            self.process.close()


class ProcessExtractor:
    """Runs :func:`extract_page` in up to ``max_workers`` processes, each job bounded by ``timeout``.

    A job that passes ``timeout`` seconds gets its worker killed (SIGKILL) and
    raises ``ExtractError(url, "extraction timed out after Ns")``; the next job
    starts a fresh worker. A worker that dies (crash, out of memory) costs its
    job only: ``ExtractError(url, "extraction worker died")``. Time spent
    waiting for a free worker does not count against a job's limit. Each
    worker's address space is capped at ``memory_limit`` bytes (None: no cap);
    a page that needs more fails alone, and its worker is replaced. A worker
    is also replaced after ``max_jobs`` pages, because lxml's and Python's
    heaps only grow (measured: 81 -> 128 MB for two workers over 20 bench
    cycles); a fresh fork from the forkserver costs milliseconds.

    ``start_method`` is a :mod:`multiprocessing` start method. ``forkserver``
    (the default) preloads this module once, so a worker starts in
    milliseconds; ``_extract`` must be a module-level function (it is pickled
    by name).

    >>> import asyncio
    >>> ex = ProcessExtractor(timeout=20)
    >>> page = asyncio.run(ex.extract(b"<html><body><article><p>" + b"Text. " * 60
    ...     + b"</p></article></body></html>", "https://example.org/a", "text/html"))
    >>> page.text[:10]
    'Text. Text'
    >>> ex.close()
    """

    def __init__(
        self,
        *,
        timeout: float = 20.0,
        max_workers: int = 2,
        start_method: str = "forkserver",
        memory_limit: int | None = WORKER_MEMORY_LIMIT,
        max_jobs: int = WORKER_MAX_PAGES,
        _extract: Callable[[bytes, str, str], ExtractedPage] = extract_page,
    ) -> None:
        self.timeout = timeout
        self.memory_limit = memory_limit
        self.max_jobs = max_jobs
        self._extract = _extract
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # Import trafilatura once in the fork server, not in every worker.
            self._ctx.set_forkserver_preload(["monitor.extract", "trafilatura"])
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        # One waiting thread per running job; each wait is bounded by the timeout.
        self._threads = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="extract")
        #: Workers killed at their time limit or found dead, since the start.
        self.killed = 0

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("extractor is closed")
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                worker = _Worker(self._ctx, self._extract, self.memory_limit)
            self._busy.add(worker)
            return worker

    def _give_back(self, worker: _Worker, *, healthy: bool) -> None:
        with self._lock:
            self._busy.discard(worker)
            if healthy and not self._closed and worker.jobs < self.max_jobs:
                self._idle.put(worker)
                return
            if not healthy:
                self.killed += 1
        worker.kill()

    def _run(self, content: bytes, url: str, content_type: str) -> ExtractedPage:
        """In a waiting thread: hand the page to a worker; kill it at the deadline."""
        if len(content) > MAX_PAGE_BYTES:  # no point shipping it to a worker
            raise ExtractError(url, f"page over {MAX_PAGE_BYTES} bytes")
        worker = self._take()
        healthy = False
        try:
            try:
                # A new worker's start-up (a fork, and unpickling its function)
                # is not the page's fault: the time limit starts after it.
                if not worker.wait_ready(WORKER_START_S):
                    raise ExtractError(url, "extraction worker did not start")
                worker.conn.send((content, url, content_type))
                if not worker.conn.poll(self.timeout):
                    raise ExtractError(url, f"extraction timed out after {self.timeout:g}s")
                kind, value = worker.conn.recv()
            except (EOFError, OSError) as e:
                raise ExtractError(url, "extraction worker died") from e
            healthy = kind != "retire"
            worker.jobs += 1
        finally:
            self._give_back(worker, healthy=healthy)
        if kind in ("error", "retire"):
            raise ExtractError(url, str(value))
        if not isinstance(value, ExtractedPage):
            raise ExtractError(url, "extraction failed: bad reply from the worker")
        return value

    async def extract(self, content: bytes, url: str, content_type: str) -> ExtractedPage:
        """Extract in a worker process; raise ExtractError on failure or timeout."""
        if self._closed:
            raise RuntimeError("extractor is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._run, content, url, content_type)

    def start(self) -> None:
        """Start one worker now rather than on the first page (optional warm-up)."""
        self._give_back(self._take(), healthy=True)

    def close(self) -> None:
        """Kill every worker; jobs still running end with ExtractError."""
        with self._lock:
            self._closed = True
            workers = list(self._busy)
            while True:
                try:
                    workers.append(self._idle.get_nowait())
                except queue.Empty:
                    break
        for worker in workers:
            worker.kill()
        self._threads.shutdown(wait=False, cancel_futures=True)
