"""Render one Teams channel thread (root post and replies) as a self-contained HTML page
and as JSON, from Graph's chatMessage JSON.

Message bodies are HTML written by users, so the page is rebuilt from an allowlist rather
than copied: the body is parsed with lxml and only plain formatting elements are written
back, with no attributes except a checked ``href``. Scripts, styles, frames, forms and
event handler attributes are dropped, and images become a text placeholder, so opening the
page fetches nothing. A Content-Security-Policy that forbids every source but inline style
repeats that for viewers that honour it.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import lxml.etree
import lxml.html

from m365lake.discovery.production.printable import printable_text

# Elements written back as they are, without attributes.
_KEPT = frozenset(
    {
        "p", "br", "div", "span", "b", "strong", "i", "em", "u", "s", "strike", "del", "ins",
        "sub", "sup", "small", "ul", "ol", "li", "blockquote", "pre", "code", "hr",
        "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tfoot", "tr", "td",
        "th", "caption",
    }
)  # fmt: skip
_VOID = frozenset({"br", "hr"})
# Elements dropped with everything inside them: active content, or text never shown.
_DROPPED = frozenset(
    {
        "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet",
        "noscript", "template", "form", "input", "button", "select", "textarea", "link",
        "meta", "base", "head", "title", "svg", "math", "audio", "video", "source", "track",
        "canvas", "portal", "dialog",
    }
)  # fmt: skip
_LINK_SCHEMES = ("http://", "https://", "mailto:")

_PAGE_STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#222}"
    ".message{border-left:3px solid #999;margin:1em 0;padding:.2em 1em}"
    ".reply{margin-left:2em;border-color:#ccc}"
    ".meta{color:#555;font-size:.9em}"
    ".marker{font-weight:bold;color:#a00}"
    ".mention{font-weight:bold}"
)
_POLICY = "default-src 'none'; style-src 'unsafe-inline'"


def _created(message: Mapping[str, Any]) -> str:
    return str(message.get("createdDateTime") or "")


def thread_order(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Return the messages in posting order: by creation time, then id, then modification."""
    return sorted(
        messages,
        key=lambda message: (
            _created(message),
            str(message.get("id") or ""),
            str(message.get("lastModifiedDateTime") or ""),
        ),
    )


def _author(message: Mapping[str, Any]) -> str:
    sender = message.get("from") or {}
    if isinstance(sender, Mapping):
        for kind in ("user", "application", "device"):
            identity = sender.get(kind)
            if isinstance(identity, Mapping) and identity.get("displayName"):
                return str(identity["displayName"])
    return "unknown sender"


def _escape(value: Any) -> str:
    return html.escape(printable_text(str(value)), quote=True)


# ---- body ----------------------------------------------------------------------------------


def _safe_href(value: str | None) -> str | None:
    if not value:
        return None
    # Browsers ignore control characters and spaces inside a scheme ("java\tscript:").
    compact = "".join(ch for ch in value if ch > " ").lower()
    return value if compact.startswith(_LINK_SCHEMES) else None


class _BodyWriter:
    """Write an allowlisted copy of a parsed message body."""

    def __init__(self, attachments: Mapping[str, str]) -> None:
        self.attachments = attachments
        self.parts: list[str] = []

    def element(self, node: Any) -> None:
        tag = node.tag.lower() if isinstance(node.tag, str) else None
        if tag is None:
            # A comment or processing instruction: skip it but keep the text after it.
            self.text(node.tail)
            return
        if tag in _DROPPED:
            self.text(node.tail)
            return
        if tag == "at":
            self.parts.append(f'<span class="mention">@{_escape(node.text_content())}</span>')
        elif tag == "img":
            label = node.get("alt") or "image"
            self.parts.append(f'<span class="placeholder">[{_escape(label)}]</span>')
        elif tag == "emoji":
            self.text(node.get("alt") or node.text_content())
        elif tag == "attachment":
            name = self.attachments.get(node.get("id") or "", "file")
            self.parts.append(f'<span class="placeholder">[attachment: {_escape(name)}]</span>')
        elif tag == "a":
            href = _safe_href(node.get("href"))
            if href is None:
                self.children(node)
            else:
                self.parts.append(f'<a href="{_escape(href)}" rel="noopener noreferrer">')
                self.children(node)
                self.parts.append("</a>")
        elif tag in _KEPT:
            self.parts.append(f"<{tag}>")
            if tag not in _VOID:
                self.children(node)
                self.parts.append(f"</{tag}>")
        else:
            # Unknown or layout-only elements (font, body, html, custom tags): keep the text.
            self.children(node)
        self.text(node.tail)

    def children(self, node: Any) -> None:
        self.text(node.text)
        for child in node:
            self.element(child)

    def text(self, value: str | None) -> None:
        if value:
            self.parts.append(_escape(value))


def render_body(message: Mapping[str, Any]) -> str:
    """Return the message body as safe HTML: allowlisted elements, escaped text."""
    body = message.get("body") or {}
    content = str(body.get("content") or "") if isinstance(body, Mapping) else ""
    if not content.strip():
        return ""
    if str(body.get("contentType") or "").lower() != "html":
        return "<br>".join(_escape(line) for line in content.splitlines())
    attachments = {
        str(item.get("id")): str(item.get("name") or "file")
        for item in message.get("attachments") or []
        if isinstance(item, Mapping)
    }
    writer = _BodyWriter(attachments)
    try:
        # A whole document, because a fragment parse drops everything after a stray
        # ``</body>``; the html and body elements are then written as their children.
        root = lxml.html.document_fromstring(f"<html><body>{content}</body></html>")
    except (lxml.etree.ParserError, ValueError):
        return _escape(content)
    writer.children(root)
    return "".join(writer.parts)


# ---- page ----------------------------------------------------------------------------------


def _reactions(message: Mapping[str, Any]) -> str:
    counts = Counter(
        str(reaction.get("reactionType") or "reaction")
        for reaction in message.get("reactions") or []
        if isinstance(reaction, Mapping)
    )
    if not counts:
        return ""
    listed = ", ".join(f"{_escape(kind)}: {count}" for kind, count in sorted(counts.items()))
    return f'<div class="meta">Reactions: {listed}</div>'


def _mentions(message: Mapping[str, Any]) -> str:
    names = [
        str(mention.get("mentionText") or "")
        for mention in message.get("mentions") or []
        if isinstance(mention, Mapping)
    ]
    if not names:
        return ""
    return f'<div class="meta">Mentions: {", ".join(_escape(name) for name in names)}</div>'


def _attachments(message: Mapping[str, Any]) -> str:
    items = []
    for attachment in message.get("attachments") or []:
        if not isinstance(attachment, Mapping):
            continue
        name = _escape(attachment.get("name") or attachment.get("id") or "attachment")
        kind = _escape(attachment.get("contentType") or "")
        url = attachment.get("contentUrl")
        location = f" <code>{_escape(url)}</code>" if url else ""
        items.append(f"<li>{name} ({kind}){location}</li>")
    if not items:
        return ""
    return f'<div class="meta">Attachments:<ul>{"".join(items)}</ul></div>'


def _message_html(message: Mapping[str, Any], deleted_at: str | None = None) -> str:
    classes = "message reply" if message.get("replyToId") else "message"
    header = [
        f"<strong>{_escape(_author(message))}</strong>",
        f"<time>{_escape(_created(message))}</time>",
    ]
    if message.get("importance") in ("high", "urgent"):
        header.append(f'<span class="marker">{_escape(message["importance"])} importance</span>')
    if message.get("lastEditedDateTime"):
        header.append(
            f'<span class="marker">edited {_escape(message["lastEditedDateTime"])}</span>'
        )
    deleted = message.get("deletedDateTime") or deleted_at
    if deleted:
        header.append(f'<span class="marker">deleted {_escape(deleted)}</span>')
    parts = [
        f'<article class="{classes}" id="message-{_escape(message.get("id") or "")}">',
        f'<div class="meta">{" · ".join(header)}</div>',
    ]
    if message.get("subject"):
        parts.append(f"<h2>{_escape(message['subject'])}</h2>")
    if message.get("deletedDateTime"):
        parts.append('<p class="marker">This message was deleted.</p>')
    elif deleted:
        parts.append(
            '<p class="marker">This message was deleted. Its text before the deletion:</p>'
        )
    parts.append(f'<div class="body">{render_body(message)}</div>')
    parts.extend(
        section
        for section in (_mentions(message), _reactions(message), _attachments(message))
        if section
    )
    parts.append("</article>")
    return "\n".join(parts)


def _title(ordered: Sequence[Mapping[str, Any]]) -> str:
    if not ordered:
        return "Teams thread"
    root = ordered[0]
    return str(root.get("subject") or f"Teams thread by {_author(root)} {_created(root)}")


def render_thread_html(
    messages: Sequence[Mapping[str, Any]], *, deleted: Mapping[str, str] | None = None
) -> bytes:
    """Render a thread's chatMessage JSON objects as one UTF-8 HTML page, in posting order.

    ``deleted`` maps the id of a message deleted after the version given to the time of
    its deletion: that version's text is shown, marked deleted.
    """
    ordered = thread_order(messages)
    deleted = deleted or {}
    body = "\n".join(
        _message_html(message, deleted.get(str(message.get("id") or ""))) for message in ordered
    )
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
        f"<title>{_escape(_title(ordered))}</title><style>{_PAGE_STYLE}</style></head>\n"
        f"<body>\n<h1>{_escape(_title(ordered))}</h1>\n{body}\n</body></html>\n"
    )
    return page.encode("utf-8")


def render_thread_json(
    messages: Sequence[Mapping[str, Any]], *, deleted: Mapping[str, str] | None = None
) -> bytes:
    """Render the thread as UTF-8 JSON: its ids and the messages in posting order, as Graph
    returned them.

    ``deleted`` (message id to deletion time, as for ``render_thread_html``) is listed
    beside the messages rather than written into them, so each stays as Graph returned it.
    """
    ordered = thread_order(messages)
    root = next((m for m in ordered if not m.get("replyToId")), ordered[0] if ordered else {})
    identity = root.get("channelIdentity") or {}
    document: dict[str, Any] = {
        "teamId": identity.get("teamId") if isinstance(identity, Mapping) else None,
        "channelId": identity.get("channelId") if isinstance(identity, Mapping) else None,
        "rootMessageId": root.get("id"),
        "messages": [dict(message) for message in ordered],
    }
    if deleted:
        document["deletedMessages"] = [
            {"id": message_id, "deletedDateTime": moment}
            for message_id, moment in sorted(deleted.items())
        ]
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=False).encode("utf-8")
