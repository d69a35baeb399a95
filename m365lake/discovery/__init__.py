"""E-discovery: cases, custodians, saved searches, legal holds and the audit trail.

State lives in the lake: each change is one commit that appends rows to the ``cases``,
``case_custodians``, ``case_searches``, ``holds`` and ``audit_events`` tables and
updates the case's state keys, so DuckDB reads the history and concurrent writers are
ordered by the lake's commit check.
"""

from m365lake.discovery.audit import AuditEvent, append_event, record_event
from m365lake.discovery.audit_chain import check_audit_chain, read_audit_events
from m365lake.discovery.case_state import CaseDetails, active_holds, find_case, load_case
from m365lake.discovery.cases import (
    add_custodians,
    close_case,
    create_case,
    delete_search,
    list_cases,
    remove_custodian,
    save_search,
)
from m365lake.discovery.coverage import HoldCoverage, ItemVersion, covered_versions
from m365lake.discovery.custodians import resolve_custodian
from m365lake.discovery.errors import (
    CaseNotFoundError,
    CaseStateError,
    CustodianNotFoundError,
    DiscoveryError,
    InvalidRequestError,
)
from m365lake.discovery.holds import list_holds, place_hold, release_hold
from m365lake.discovery.integrity import verify_archive
from m365lake.discovery.records import Case, Custodian, Hold, SavedSearch

__all__ = [
    "AuditEvent",
    "Case",
    "CaseDetails",
    "CaseNotFoundError",
    "CaseStateError",
    "Custodian",
    "CustodianNotFoundError",
    "DiscoveryError",
    "Hold",
    "HoldCoverage",
    "InvalidRequestError",
    "ItemVersion",
    "SavedSearch",
    "active_holds",
    "add_custodians",
    "append_event",
    "check_audit_chain",
    "close_case",
    "covered_versions",
    "create_case",
    "delete_search",
    "find_case",
    "list_cases",
    "list_holds",
    "load_case",
    "place_hold",
    "read_audit_events",
    "record_event",
    "release_hold",
    "remove_custodian",
    "resolve_custodian",
    "save_search",
    "verify_archive",
]
