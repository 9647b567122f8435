"""Slack through a bot token goes through apprise; a hostile title still pings nobody (C13).

apprise's Slack plugin posts to the fixed address https://slack.com/api/,
which no loopback server can stand in for, so the one fake here is at the
network edge: ``requests.request`` records the JSON apprise would have sent
and answers as Slack does. Everything before it is real: our renderer,
AppriseNotifier, and apprise's own Slack formatting, which is what turns
``<!channel>`` (even escaped as ``&lt;!channel&gt;``) back into a mention.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from monitor.alert import AppriseNotifier, render_alert
from monitor.alert.render import AlertView
from monitor.config import Secret

BOT = "slack://xoxb-1234-1234-abc124/#general"
EVIL = AlertView(
    hit_id=9,
    title="<!channel> read this <https://evil.example|bank.com> &lt;!here&gt;",
    outlet="Evil <@U123> Gazette",
    published="2026-03-01",
    link="https://news.example.org/a?b=1&c=2",
    rule="activism",
    category="government-contracts",
    terms=("Salesforce",),
    sentence="Salesforce staff !everyone|x> wrote <!subteam^S1> a letter.",
)
#: What Slack reads as a mention, a special command, or a link other than the article's.
LIVE = re.compile(r"<[!@#]|<(?!https://news\.example\.org/a\?b=1&amp;c=2\|)[a-z]+:")


class SlackAPI:
    """Stands in for slack.com: records each JSON payload, answers ``{"ok": true}``."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def __call__(self, method: str, url: str, **kw: Any) -> Any:
        assert url.startswith("https://slack.com/api/")
        self.payloads.append(json.loads(kw["data"]))

        class Response:
            status_code = 200
            content = b'{"ok": true}'
            text = content.decode()

        return Response()


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> SlackAPI:
    api = SlackAPI()
    monkeypatch.setattr("apprise.plugins.slack.requests.request", api)
    return api


def _texts(payload: dict[str, Any]) -> list[str]:
    out: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("text", "title") and isinstance(value, str):
                    out.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(payload)
    return out


@pytest.mark.parametrize("url", [BOT, BOT + "?blocks=yes"])
def test_bot_token_slack_gets_no_live_mention_or_disguised_link(slack: SlackAPI, url: str) -> None:
    notifier = AppriseNotifier({"team": Secret(url)}, timeout=10)
    asyncio.run(notifier.send("team", render_alert(EVIL, token="hit-9.team")))
    (payload,) = slack.payloads
    texts = _texts(payload)
    assert texts, payload
    for text in texts:
        assert not LIVE.search(text), text
    joined = "\n".join(texts)
    # The words are all still there, readable.
    assert "read this" in joined and "bank.com" in joined and "Gazette" in joined
    assert "monitor hit #9" in joined
    if "blocks=yes" in url:  # apprise sends mrkdwn as given: ours, escaped, terms in bold
        assert "*Salesforce*" in joined and "&lt;@U123&gt;" in joined


def test_without_the_fix_apprise_would_ping(slack: SlackAPI) -> None:
    """The case is real: apprise given our plain text as is makes a live <!channel>."""
    import apprise

    a = apprise.Apprise()
    a.add(BOT)
    message = render_alert(EVIL)
    assert a.notify(title=message.title, body=message.body)
    assert any(LIVE.search(t) for t in _texts(slack.payloads[0]))
