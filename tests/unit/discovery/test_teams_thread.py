"""Teams thread rendering: posting order, markers, and safe output for hostile bodies."""

from __future__ import annotations

import json
import re
from typing import Any

import lxml.html
import pytest

from m365lake.discovery.production.teams_thread import (
    render_body,
    render_thread_html,
    render_thread_json,
)


def message(
    message_id: str,
    created: str,
    content: str,
    *,
    reply_to: str | None = None,
    author: str = "Adele Vance",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": message_id,
        "replyToId": reply_to,
        "createdDateTime": created,
        "lastModifiedDateTime": created,
        "lastEditedDateTime": None,
        "deletedDateTime": None,
        "subject": None,
        "importance": "normal",
        "from": {"user": {"id": "u1", "displayName": author}},
        "body": {"contentType": "html", "content": content},
        "channelIdentity": {"teamId": "team-1", "channelId": "19:abc@thread.tacv2"},
        "attachments": [],
        "mentions": [],
        "reactions": [],
        **extra,
    }


def thread() -> list[dict[str, Any]]:
    root = message(
        "1700000000000",
        "2024-05-01T08:00:00.000Z",
        '<p>Kick-off <at id="0">Bob Brown</at></p><attachment id="att-1"></attachment>',
        subject="Kick-off",
        mentions=[{"id": 0, "mentionText": "Bob Brown"}],
        reactions=[{"reactionType": "like"}, {"reactionType": "like"}, {"reactionType": "heart"}],
        attachments=[
            {
                "id": "att-1",
                "contentType": "reference",
                "name": "Plan.docx",
                "contentUrl": "https://contoso.sharepoint.com/sites/x/Plan.docx",
            }
        ],
    )
    edited = message(
        "1700000000300",
        "2024-05-01T08:05:00.000Z",
        "<p>Launch on the 21st</p>",
        reply_to=root["id"],
        author="Bob Brown",
        lastEditedDateTime="2024-05-01T09:00:00.000Z",
    )
    deleted = message(
        "1700000000200",
        "2024-05-01T08:03:00.000Z",
        "",
        reply_to=root["id"],
        author="Cara Diaz",
        deletedDateTime="2024-05-02T10:00:00.000Z",
    )
    return [edited, deleted, root]


def test_thread_renders_in_posting_order() -> None:
    page = render_thread_html(thread()).decode()
    positions = [
        page.index(f'id="message-{i}"') for i in ("1700000000000", "1700000000200", "1700000000300")
    ]
    assert positions == sorted(positions)
    assert "<title>Kick-off</title>" in page


def test_control_characters_leave_headings() -> None:
    root = message(
        "1700000000000", "2024-05-01T08:00:00.000Z", "<p>hi</p>", subject="Kick\x00off\x07"
    )
    page = render_thread_html([root]).decode()

    assert "\x00" not in page
    assert "\x07" not in page
    assert "<title>Kick off </title>" in page


def test_markers_mentions_reactions_attachments() -> None:
    page = render_thread_html(thread()).decode()
    assert "edited 2024-05-01T09:00:00.000Z" in page
    assert "deleted 2024-05-02T10:00:00.000Z" in page
    assert "This message was deleted." in page
    assert '<span class="mention">@Bob Brown</span>' in page
    assert "Mentions: Bob Brown" in page
    assert "heart: 1, like: 2" in page
    assert "[attachment: Plan.docx]" in page
    assert "<code>https://contoso.sharepoint.com/sites/x/Plan.docx</code>" in page
    assert "Adele Vance" in page
    assert "Cara Diaz" in page


def test_message_deleted_later_keeps_its_text_marked_deleted() -> None:
    before = message(
        "1700000000400",
        "2024-05-01T08:07:00.000Z",
        "<p>Budget is 40k</p>",
        reply_to="1700000000000",
        author="Cara Diaz",
    )
    deleted = {"1700000000400": "2024-05-03T12:00:00Z"}

    page = render_thread_html([before], deleted=deleted).decode()
    document = json.loads(render_thread_json([before], deleted=deleted))

    assert "deleted 2024-05-03T12:00:00Z" in page
    assert "This message was deleted. Its text before the deletion:" in page
    assert "<p>Budget is 40k</p>" in page
    assert document["messages"] == [before]
    assert document["deletedMessages"] == [
        {"id": "1700000000400", "deletedDateTime": "2024-05-03T12:00:00Z"}
    ]
    assert "deletedMessages" not in json.loads(render_thread_json([before]))


HOSTILE = (
    '<p onclick="steal()">hi<script>alert(1)</script>'
    '<img src="https://evil.example/pixel.png" onerror="alert(2)" alt="pic">'
    '<a href="javascript:alert(3)">click</a>'
    '<a href=" JaVa\tScRiPt:alert(4)">tab</a>'
    '<a href="https://example.com/ok" onmouseover="x()">ok</a>'
    '<iframe src="https://evil.example/frame"></iframe>'
    "<style>body{background:url(https://evil.example/bg)}</style>"
    '<svg onload="alert(5)"><circle r="1"/></svg>'
    '<div style="background:url(https://evil.example/css)">styled</div>'
    "</div></body><script>alert(6)</script>"
    '<form action="https://evil.example"><input name="x"></form>'
    "&lt;script&gt;escaped text&lt;/script&gt;"
    "<!-- <script>alert(7)</script> -->tail"
    "</p>"
)


def test_hostile_body_is_sanitised() -> None:
    hostile = message(
        "1",
        "2024-01-01T00:00:00.000Z",
        HOSTILE,
        author='"><script>alert(8)</script>',
        subject="<img src=x onerror=alert(9)>",
        attachments=[
            {"id": "a", "name": "<script>x</script>", "contentUrl": "javascript:alert(10)"}
        ],
    )
    page = render_thread_html([hostile]).decode()
    lowered = page.lower()
    assert "<script" not in lowered
    assert "<iframe" not in lowered
    assert "<svg" not in lowered
    assert "<img" not in lowered
    assert "<form" not in lowered
    assert "<style>body{background" not in lowered
    # Escaped user text may spell "onerror=" or "src="; only real tags matter.
    tags = " ".join(re.findall(r"<[^>]*>", lowered))
    assert re.search(r"\son\w+\s*=", tags) is None
    assert "javascript" not in tags
    assert "evil.example" not in lowered
    assert "src=" not in tags
    assert "style=" not in tags
    assert 'href="https://example.com/ok" rel="noopener noreferrer"' in page
    assert "&lt;script&gt;escaped text&lt;/script&gt;" in page
    assert "[pic]" in page
    assert "styled" in page
    assert "tail" in page
    assert "default-src 'none'" in page


def test_hostile_page_parses_without_active_elements() -> None:
    hostile = message("1", "2024-01-01T00:00:00.000Z", HOSTILE)
    document = lxml.html.document_fromstring(render_thread_html([hostile]))
    for element in document.iter():
        if not isinstance(element.tag, str):
            continue
        assert element.tag not in {"script", "iframe", "img", "svg", "object", "embed", "form"}
        for name in element.attrib:
            assert not name.lower().startswith("on"), (element.tag, name)
            assert name in {"href", "rel", "class", "id", "charset", "http-equiv", "content"}


@pytest.mark.parametrize(
    ("content_type", "content", "expected"),
    [
        ("text", "line 1\n<b>line 2</b>", "line 1<br>&lt;b&gt;line 2&lt;/b&gt;"),
        ("html", "", ""),
        ("html", "<p>plain</p>", "<p>plain</p>"),
        ("html", "<font color=red>old</font>", "old"),
        ("html", '<emoji alt="😀"></emoji>', "😀"),
    ],
)
def test_render_body_cases(content_type: str, content: str, expected: str) -> None:
    item = message("1", "2024-01-01T00:00:00.000Z", content)
    item["body"]["contentType"] = content_type
    assert render_body(item) == expected


def test_thread_json_in_posting_order() -> None:
    document = json.loads(render_thread_json(thread()))
    assert document["rootMessageId"] == "1700000000000"
    assert document["teamId"] == "team-1"
    assert [m["id"] for m in document["messages"]] == [
        "1700000000000",
        "1700000000200",
        "1700000000300",
    ]
    assert document["messages"][2]["body"]["content"] == "<p>Launch on the 21st</p>"


def test_empty_thread_renders() -> None:
    assert b"<h1>Teams thread</h1>" in render_thread_html([])
    assert json.loads(render_thread_json([]))["messages"] == []
