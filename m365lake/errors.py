"""Exceptions raised by m365lake.

Every error derives from ``M365LakeError``. Whether retrying can help is carried by
the ``Transient`` and ``Terminal`` markers, so retry loops and Dagster retry policies
branch on the type, never on message text::

    M365LakeError
    ├── ConfigError                 a setting is missing or invalid
    ├── GraphError                  a Graph or token-endpoint request failed
    │   ├── GraphTransientError     (Transient) 5xx, timeouts, resets, after retries ran out
    │   │   └── ThrottledError      (Transient) 429/503 with Retry-After, after retries ran out
    │   ├── AuthenticationError     (Terminal) no token: bad credentials, tenant, certificate
    │   ├── AccessDeniedError       (Terminal) 403: a permission is missing
    │   ├── ItemNotFoundError       (Terminal) 404: mailbox, folder or item is gone
    │   ├── MailboxNotEnabledError  (Terminal) the user has no Exchange Online mailbox
    │   ├── SyncStateExpiredError   (Transient) 410: a delta token expired, resync needed
    │   └── GraphRequestError       (Terminal) any other 4xx the client cannot fix by retrying
    ├── LakeError                   the lake cannot be read or written
    │   ├── LakeNotFoundError       (Terminal) the folder holds no lake
    │   ├── CommitConflictError     (Transient) another writer took the commit sequence number
    │   ├── LakeFullError           (Transient) the lake's file system has no space left
    │   ├── LakeIntegrityError      (Terminal) a hash, manifest or chain does not match
    │   └── LakeKeyError            (Terminal) an encryption key a file needs is not loaded
    ├── QueryError                  (Terminal) a SQL statement was rejected or failed
    └── SearchError                 the search index or a KQL query failed
        ├── KqlSyntaxError          (Terminal) a KQL query does not parse; carries the offset
        │   └── UnknownPropertyError (Terminal) a property restriction names no known property
        └── SearchIndexError        (Terminal) the index is missing, locked or behind the lake
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class Transient:
    """Marker: the same operation may succeed if retried later."""


class Terminal:
    """Marker: retrying the same operation will fail the same way."""


class M365LakeError(Exception):
    """Root of every error m365lake raises on purpose."""

    def attrs(self) -> dict[str, Any]:
        """Return the structured context of the error, for logs and Dagster metadata."""
        return {
            key: value
            for key, value in vars(self).items()
            if not key.startswith("_") and value is not None
        }


class ConfigError(M365LakeError, Terminal):
    """A setting is missing or invalid; the message names the variables that were read."""


class GraphError(M365LakeError):
    """A request to Microsoft Graph or to the token endpoint failed.

    ``code`` is the OData error code (``error.code``). ``request_id`` is the ``request-id``
    response header, which Microsoft support requests when a case is opened.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        url: str | None = None,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.status = status
        self.code = code
        self.request_id = request_id


class GraphTransientError(GraphError, Transient):
    """Server errors, timeouts and dropped connections that outlasted the retry budget."""


class ThrottledError(GraphTransientError):
    """Graph returned 429 or 503 to every retry, each made after its ``Retry-After``."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class AuthenticationError(GraphError, Terminal):
    """No access token could be obtained, or Graph rejected the one presented."""


class AccessDeniedError(GraphError, Terminal):
    """Graph returned 403: the app registration lacks a permission for this resource."""


class ItemNotFoundError(GraphError, Terminal):
    """Graph returned 404: the mailbox, folder or item no longer exists."""


class MailboxNotEnabledError(GraphError, Terminal):
    """The user exists but has no Exchange Online mailbox (``MailboxNotEnabledForRESTAPI``)."""


class SyncStateExpiredError(GraphError, Transient):
    """A delta or paging token is no longer valid; the container must be enumerated again.

    ``location`` is the fresh delta URL when Graph sent one in the ``Location`` header.
    """

    def __init__(self, message: str, *, location: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.location = location


class GraphRequestError(GraphError, Terminal):
    """Graph rejected the request with a 4xx status that no retry will change."""


class LakeError(M365LakeError):
    """The lake could not be read or written."""


class LakeNotFoundError(LakeError, Terminal):
    """No lake exists at the location (it has no ``commits/`` folder), and none was created.

    ``root`` is the absolute path that was checked.
    """

    def __init__(self, message: str, *, root: str | None = None) -> None:
        super().__init__(message)
        self.root = root


class CommitConflictError(LakeError, Transient):
    """Another writer committed first; re-read the head of the chain and try again."""


class LakeFullError(LakeError, Transient):
    """The file system holding the lake has no space left (ENOSPC) or the quota is used up."""


class LakeIntegrityError(LakeError, Terminal):
    """Stored content does not match its recorded hash, or the manifest chain is broken.

    ``problems`` has one message per mismatch when a check collected several before
    raising (``Lake.verify``); it is empty when the error names a single problem.
    """

    def __init__(self, message: str, *, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class LakeKeyError(LakeError, Terminal):
    """An encrypted file needs key ``key_id``, which is not loaded or is a different key."""

    def __init__(self, message: str, *, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


class QueryError(M365LakeError, Terminal):
    """A SQL statement was rejected (not read-only) or failed in DuckDB."""


class SearchError(M365LakeError):
    """The search index or a KQL query failed."""


class KqlSyntaxError(SearchError, Terminal):
    """A KQL query does not parse.

    ``position`` is the 0-based character offset in ``query`` where parsing failed, and
    ``expected`` names what the parser would have accepted there.
    """

    def __init__(self, message: str, *, query: str, position: int, expected: str = "") -> None:
        super().__init__(message)
        self.query = query
        self.position = position
        self.expected = expected


class UnknownPropertyError(KqlSyntaxError):
    """A property restriction (``name:value``) names a property the dialect does not know."""

    def __init__(
        self, message: str, *, query: str, position: int, name: str, known: Sequence[str]
    ) -> None:
        super().__init__(message, query=query, position=position, expected="a known property")
        self.name = name
        self.known = list(known)


class SearchIndexError(SearchError, Terminal):
    """The search index is missing, locked by another writer or cannot be read."""


class RestoreError(M365LakeError, Terminal):
    """A restore cannot run as requested: an empty selection, an invalid target or policy."""
