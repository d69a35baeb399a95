"""Exceptions raised by cases, holds and the audit trail.

They extend the tree in ``m365lake.errors``::

    M365LakeError
    └── DiscoveryError              a case, custodian, search or hold request failed
        ├── InvalidRequestError     (Terminal) an argument is missing or malformed
        ├── CaseNotFoundError       (Terminal) no case, search or hold has the id given
        ├── CaseStateError          (Terminal) the case's current state forbids the change
        └── CustodianNotFoundError  (Terminal) the lake has no such mailbox, drive or site

Verification problems (a broken audit chain) raise ``LakeIntegrityError``, and a query
hold without a search index raises ``SearchIndexError``, both from ``m365lake.errors``.
"""

from __future__ import annotations

from m365lake.errors import M365LakeError, Terminal


class DiscoveryError(M365LakeError):
    """A case, custodian, saved search or hold request failed."""


class InvalidRequestError(DiscoveryError, Terminal):
    """An argument is missing or malformed; the message names it and the accepted form."""


class CaseNotFoundError(DiscoveryError, Terminal):
    """No case (or no saved search or hold of a case) has the id given."""


class CaseStateError(DiscoveryError, Terminal):
    """The change conflicts with the case's current state, e.g. the case is closed."""


class CustodianNotFoundError(DiscoveryError, Terminal):
    """The lake's mailboxes, drives or sites table has no entry matching the reference.

    ``kind`` is ``mailbox``, ``onedrive`` or ``site``, and ``reference`` the value given.
    """

    def __init__(self, message: str, *, kind: str, reference: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.reference = reference
