"""Messages render harmless in every format (FAULTS C13, C14, C22)."""

from __future__ import annotations

from monitor.alert import AlertView, DigestStory, render_alert, render_digest
from monitor.alert.channels import delivery_targets, parse_retry_after, split_channel
from monitor.config import Secret

EVIL = AlertView(
    hit_id=42,
    title="<!channel> <script>alert(1)</script>\r\nBcc: x@y.org <https://evil.example|bank.com>",
    outlet="Evil <b>Gazette</b>",
    published="2026-03-01",
    link="javascript:alert(document.cookie)",
    rule="activism",
    category="government-contracts",
    terms=("Salesforce", "employees"),
    sentence="Salesforce employees <!here> wrote <https://evil.example|a letter>.",
)


def test_c13_c14_evil_title_is_harmless_in_every_format() -> None:
    m = render_alert(EVIL, token="hit-42.team")
    assert "\r" not in m.title and "\n" not in m.title
    assert m.markdown is not None and m.html is not None
    for text in (m.markdown,):
        assert "<!channel>" not in text and "<!here>" not in text
        assert "<https://evil.example|" not in text
        assert "&lt;!channel&gt;" in text
        assert "javascript:" not in text
    assert "<script>" not in m.html and "&lt;script&gt;" in m.html
    assert 'href="javascript' not in m.html and "<a " not in m.html
    assert "<b>" not in m.html
    assert "javascript:" not in m.body  # no link in plain text either
    assert "monitor hit #42" in m.body and "monitor hit #42" in m.markdown
    assert "*Salesforce* *employees*" in m.markdown
    assert "<mark>Salesforce</mark>" in m.html


def test_safe_links_render_as_links() -> None:
    view = AlertView(**{**EVIL.__dict__, "link": "https://news.example.org/a?b=1&c=2"})
    m = render_alert(view)
    assert m.html is not None and 'href="https://news.example.org/a?b=1&amp;c=2"' in m.html
    assert m.markdown is not None and "<https://news.example.org/a?b=1&amp;c=2|" in m.markdown


def test_c22_templates_cannot_reach_python_objects() -> None:
    template = "${title} | ${title.__class__} | {{ ''.__class__.__mro__ }} | $hit_id | $nope"
    m = render_alert(EVIL, templates={"text": template, "markdown": template})
    assert "${title.__class__}" in m.body and "{{ ''.__class__.__mro__ }}" in m.body
    assert "<class" not in m.body and "$nope" in m.body
    assert "| 42 |" in m.body
    assert m.markdown is not None and "<!channel>" not in m.markdown


def test_digest_escapes_and_lists_outlets() -> None:
    m = render_digest(
        "daily 08:00",
        [DigestStory(view=EVIL, outlets=("A", "B <c>"), hit_ids=(1, 2))],
        token="digest-1.team",
    )
    assert "2 outlets: A, B <c>" in m.body
    assert m.markdown is not None and "B &lt;c&gt;" in m.markdown and "<!channel>" not in m.markdown
    assert m.html is not None and "<script>" not in m.html


def test_recipients_split_and_retry_after() -> None:
    channels = {
        "inbox": Secret(
            "mailto://127.0.0.1:25?from=m@example.org&to=a@x.org,b@x.org&mode=insecure"
        ),
        "hook": Secret("json://127.0.0.1/hook"),
    }
    assert delivery_targets(channels, ["inbox", "hook"]) == ("inbox#1", "inbox#2", "hook")
    assert split_channel("inbox#2") == ("inbox", 2) and split_channel("hook") == ("hook", None)
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("99999999") == 6 * 3600.0


def test_delivery_error_is_in_the_tree_under_alert_error() -> None:
    """DeliveryError descends from the one root and is drawn in the exception tree."""
    import monitor.exceptions as exc
    from monitor.alert import DeliveryError

    e = DeliveryError("team", "HTTP 429", retry_after=30.0)
    assert isinstance(e, exc.AlertError) and isinstance(e, exc.MonitorError)
    assert (e.channel, e.reason, e.retry_after, e.permanent) == ("team", "HTTP 429", 30.0, False)
    assert str(e) == "channel 'team': HTTP 429"
    tree = exc.__doc__ or ""
    alert_line = next(line for line in tree.splitlines() if "AlertError(" in line)
    delivery_line = next(line for line in tree.splitlines() if "DeliveryError" in line)
    # Drawn one level below AlertError.
    assert delivery_line.index("DeliveryError") == alert_line.index("AlertError") + 4
