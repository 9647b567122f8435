"""Rendering: a hit (or a digest of stories) into plain text, Slack mrkdwn and e-mail HTML.

Pure functions. Article titles, outlets and sentences are untrusted: every
sink gets its own escaping (FAULTS C13, C14, C22):

- the subject line has no control characters, so no CR/LF header injection;
- Slack mrkdwn escapes ``&``, ``<`` and ``>`` (Slack's own rule), so a title
  holding ``<!channel>`` or ``<https://evil|bank.com>`` pings nobody and
  disguises no link;
- HTML is escaped with :func:`html.escape`, quotes included;
- a link is rendered as a link only when it is ``http(s)``: ``javascript:``
  and ``data:`` links are shown as withheld text, never as a link;
- a per-channel template is a :class:`string.Template`: it substitutes
  named strings and nothing else, so it cannot reach Python objects
  (``${title.__class__}`` is not a placeholder and stays as written). Each
  rendering escapes the values for its own sink before they are substituted
  (Slack escaping for ``markdown``, HTML escaping for ``html``, one clean
  line for ``title``); the template text itself is the operator's and is
  used as written. :func:`check_template` is the configuration's check
  (unknown placeholders are load errors).
"""

from __future__ import annotations

import html
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: Longest subject line; mail clients cut longer ones anyway.
SUBJECT_MAX = 250
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")
_SPACES = re.compile(r"\s+")
_SAFE_LINK = re.compile(r"https?://[^\s<>\"'|`\\]+", re.IGNORECASE)

#: The renderings a channel may override with a template (``channels.NAME.template``).
TEMPLATE_KINDS = ("title", "text", "markdown", "html")
#: The placeholders a template may use; every value is a string escaped for its sink.
TEMPLATE_FIELDS = (
    "title",
    "title_link",
    "outlet",
    "date",
    "link",
    "rule",
    "category",
    "terms",
    "sentence",
    "also",
    "update",
    "hit_id",
    "token",
)


@dataclass(frozen=True)
class Message:
    """A rendered alert, ready for any channel."""

    #: One line: the e-mail subject or the chat title. No control characters.
    title: str
    #: Plain text; always present (apprise services and webhooks send this).
    body: str
    #: E-mail HTML, escaped; None for notices that have only text.
    html: str | None = None
    #: Slack mrkdwn, escaped; None means "use the plain text, escaped".
    markdown: str | None = None
    #: Idempotency token: the same for every attempt of one outbox row.
    token: str | None = None


@dataclass(frozen=True)
class AlertView:
    """What a message about one hit shows; built from a claimed outbox row."""

    hit_id: int
    title: str
    outlet: str
    published: str | None
    link: str | None
    rule: str
    category: str | None
    terms: tuple[str, ...]
    sentence: str
    #: Other outlets that reported the same story (digests, "also reported by").
    also: tuple[str, ...] = ()
    #: A later report of a story that already alerted (a rule with ``updates: true``).
    update: bool = False


@dataclass(frozen=True)
class DigestStory:
    """One story in a digest: its first hit in the period, and every outlet that told it."""

    view: AlertView
    #: Every outlet of the story, first reporter first.
    outlets: tuple[str, ...]
    #: The hits of this story in the digest.
    hit_ids: tuple[int, ...] = field(default_factory=tuple)


def clean_line(text: str) -> str:
    """One line of text: control characters (CR, LF, bidi overrides) become spaces."""
    return _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()


def safe_link(url: str | None) -> str | None:
    """The URL if it is a plain http(s) link, else None (``javascript:``, ``data:``, junk)."""
    if not url:
        return None
    url = url.strip()
    return url if _SAFE_LINK.fullmatch(url) else None


def slack_escape(text: str) -> str:
    """Slack's escaping for text in mrkdwn: ``&``, ``<`` and ``>`` (C13)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _term_pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    parts = []
    for term in terms:
        base = term.removeprefix("=")
        prefix = base.endswith("*")
        base = base.removesuffix("*").strip()
        if not base:
            continue
        tail = r"\w*" if prefix else r"(?!\w)"
        parts.append(rf"(?<!\w){re.escape(base)}{tail}")
    if not parts:
        return None
    # Longest first, so "Salesforce employees" wins over "Salesforce".
    parts.sort(key=len, reverse=True)
    return re.compile("|".join(parts), re.IGNORECASE)


def highlight(text: str, terms: Sequence[str]) -> list[tuple[str, bool]]:
    """``text`` cut into (segment, is_matched_term) pieces, for each format to mark up."""
    pattern = _term_pattern(terms)
    if pattern is None:
        return [(text, False)]
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            out.append((text[pos : m.start()], False))
        out.append((m.group(0), True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


def _fields(view: AlertView) -> dict[str, str]:
    """Template fields: plain strings only (C22)."""
    return {
        "title": clean_line(view.title) or "(untitled)",
        "outlet": clean_line(view.outlet),
        "date": clean_line(view.published or "unknown"),
        "link": safe_link(view.link) or "(no http(s) link)",
        "rule": clean_line(view.rule),
        "category": clean_line(view.category or "-"),
        "terms": clean_line(", ".join(view.terms)),
        "sentence": clean_line(view.sentence),
        "hit_id": str(view.hit_id),
        "token": f"monitor hit #{view.hit_id}",
        "also": clean_line(", ".join(view.also)),
        "update": "Update: " if view.update else "",
    }


def check_template(text: str) -> str | None:
    """Why ``text`` is not a usable template (a stray ``$``, an unknown placeholder), or None."""
    t = string.Template(text)
    if not t.is_valid():
        return "a '$' that starts no placeholder (write $$ for a dollar sign, ${name} for a value)"
    unknown = sorted(set(t.get_identifiers()) - set(TEMPLATE_FIELDS))
    if unknown:
        return (
            f"unknown placeholder{'s' if len(unknown) > 1 else ''} "
            f"{', '.join('$' + u for u in unknown)} (known: "
            f"{', '.join('$' + k for k in TEMPLATE_FIELDS)})"
        )
    return None


def _fill(template: str, fields: Mapping[str, str]) -> str:
    # safe_substitute: a placeholder the configuration check did not see (a
    # template built in code) stays as written rather than failing a send.
    return string.Template(template).safe_substitute(fields)


def subject(view: AlertView, template: str | None = None) -> str:
    """The subject line: no CR/LF (C14), capped."""
    if template is not None:
        line = clean_line(_fill(template, {**_fields(view), "title_link": clean_line(view.title)}))
        if line:
            return line[:SUBJECT_MAX]
    prefix = "update: " if view.update else ""
    return clean_line(f"[monitor] {prefix}{view.rule}: {view.title}")[:SUBJECT_MAX]


def render_text(view: AlertView, template: str | None = None) -> str:
    """Plain text. The last line is the hit id, the token a repeat carries too."""
    f = _fields(view)
    if template is not None:
        return _fill(template, {**f, "title_link": f["title"]})
    lines = ["Update: a later report of a story already alerted", ""] if view.update else []
    lines += [
        f["title"],
        "",
        f"Source: {f['outlet']}",
        f"Date: {f['date']}",
        f"Link: {f['link']}",
        f"Rule: {f['rule']} ({f['category']})",
        f"Matched: {f['terms']}",
    ]
    if view.also:
        lines.append(f"Also reported by: {f['also']}")
    lines += ["", f"> {f['sentence']}", "", f["token"]]
    return "\n".join(lines)


def render_markdown(view: AlertView, template: str | None = None) -> str:
    """Slack mrkdwn: every untrusted string escaped, terms in bold, a link only if http(s)."""
    f = {k: slack_escape(v) for k, v in _fields(view).items()}
    link = safe_link(view.link)
    title = f["title"]
    f["title_link"] = f"<{slack_escape(link).replace('|', '%7C')}|{title}>" if link else title
    sentence = "".join(
        f"*{slack_escape(clean_line(s))}*" if hit else slack_escape(s)
        for s, hit in highlight(clean_line(view.sentence), view.terms)
    )
    f["sentence"] = sentence
    if template is not None:
        return _fill(template, f)
    lines = ["_Update: a later report of a story already alerted_"] if view.update else []
    lines += [
        f"*{f['title_link']}*",
        f"{f['outlet']} · {f['date']} · rule `{f['rule']}` ({f['category']})",
        f"Matched: {f['terms']}",
    ]
    if view.also:
        lines.append(f"Also reported by: {f['also']}")
    lines += [f"> {sentence}", f["token"]]
    return "\n".join(lines)


def _html_link(url: str | None, label: str) -> str:
    link = safe_link(url)
    if link is None:
        return html.escape(label)
    return f'<a href="{html.escape(link, quote=True)}">{html.escape(label)}</a>'


def _html_sentence(view: AlertView) -> str:
    return "".join(
        f"<mark>{html.escape(s)}</mark>" if hit else html.escape(s)
        for s, hit in highlight(clean_line(view.sentence), view.terms)
    )


def render_html(view: AlertView, template: str | None = None) -> str:
    """E-mail HTML: everything escaped; a link only if http(s)."""
    f = _fields(view)
    if template is not None:
        escaped = {k: html.escape(v, quote=True) for k, v in f.items()}
        escaped["title_link"] = _html_link(view.link, f["title"])
        escaped["sentence"] = _html_sentence(view)
        return _fill(template, escaped)
    also = f"<p>Also reported by: {html.escape(f['also'])}</p>\n" if view.also else ""
    update = (
        "<p><em>Update: a later report of a story already alerted</em></p>\n" if view.update else ""
    )
    return (
        "<!doctype html>\n<html><body>\n"
        f"{update}"
        f"<h2>{_html_link(view.link, f['title'])}</h2>\n"
        f"<p>{html.escape(f['outlet'])} · {html.escape(f['date'])} · "
        f"rule <code>{html.escape(f['rule'])}</code> ({html.escape(f['category'])})</p>\n"
        f"<p>Matched: {html.escape(f['terms'])}</p>\n"
        f"{also}"
        f"<blockquote>{_html_sentence(view)}</blockquote>\n"
        f"<p><small>{html.escape(f['token'])}</small></p>\n"
        "</body></html>\n"
    )


def render_alert(
    view: AlertView, *, token: str | None = None, templates: Mapping[str, str] | None = None
) -> Message:
    """All renderings of one hit; ``templates`` may override any of :data:`TEMPLATE_KINDS`."""
    t = templates or {}
    return Message(
        title=subject(view, t.get("title")),
        body=render_text(view, t.get("text")),
        html=render_html(view, t.get("html")),
        markdown=render_markdown(view, t.get("markdown")),
        token=token,
    )


def render_digest(
    label: str, stories: Sequence[DigestStory], *, token: str | None = None
) -> Message:
    """One digest message: its stories, each with every outlet that reported it."""
    n = len(stories)
    title = clean_line(f"[monitor] digest {label}: {n} {'story' if n == 1 else 'stories'}")
    text: list[str] = [title, ""]
    md: list[str] = [f"*{slack_escape(title)}*"]
    parts: list[str] = [f"<!doctype html>\n<html><body>\n<h2>{html.escape(title)}</h2>\n<ol>"]
    for i, story in enumerate(stories, 1):
        f = _fields(story.view)
        outlets = clean_line(", ".join(story.outlets))
        hits = ", ".join(f"#{h}" for h in story.hit_ids)
        text += [
            f"{i}. {f['title']}",
            f"   {f['link']}",
            f"   {len(story.outlets)} outlets: {outlets}",
            f"   rule {f['rule']} ({f['category']}); matched: {f['terms']}",
            f"   > {f['sentence']}",
            f"   monitor hits {hits}",
            "",
        ]
        link = safe_link(story.view.link)
        t = slack_escape(f["title"])
        shown = f"<{slack_escape(link).replace('|', '%7C')}|{t}>" if link else t
        md += [
            f"{i}. *{shown}*",
            f"    {len(story.outlets)} outlets: {slack_escape(outlets)}",
            f"    > {slack_escape(f['sentence'])}",
            f"    monitor hits {hits}",
        ]
        parts.append(
            f"<li>{_html_link(story.view.link, f['title'])}<br>\n"
            f"{len(story.outlets)} outlets: {html.escape(outlets)}<br>\n"
            f"<blockquote>{_html_sentence(story.view)}</blockquote>\n"
            f"<small>monitor hits {html.escape(hits)}</small></li>"
        )
    parts.append("</ol>\n</body></html>\n")
    return Message(
        title=title[:SUBJECT_MAX],
        body="\n".join(text).rstrip() + "\n",
        html="\n".join(parts),
        markdown="\n".join(md),
        token=token,
    )


__all__ = [
    "TEMPLATE_FIELDS",
    "TEMPLATE_KINDS",
    "AlertView",
    "DigestStory",
    "Message",
    "check_template",
    "clean_line",
    "highlight",
    "render_alert",
    "render_digest",
    "render_html",
    "render_markdown",
    "render_text",
    "safe_link",
    "slack_escape",
    "subject",
]
