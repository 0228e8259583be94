"""Who may do what, and who may see which events: the gateway's access policy.

One table (`PERMISSIONS`) says which actions each role may take; `may_see` says
whether a connected user may receive an event of a given scope (see
`dashboards.wards.scope_of`). Keeping both here, pure, means the whole policy can be
read and tested in one place instead of being spread over the connection code.

| action        | nurse | physician | auditor | admin |
| ------------- | ----- | --------- | ------- | ----- |
| feed          | wards | wards     | all     | all   |
| view_patient  | wards | wards     | all     | all   |
| acknowledge   | wards | wards     | -       | all   |
| silence       | wards | wards     | -       | all   |
| escalate      | wards | wards     | -       | all   |
| note          | wards | wards     | -       | all   |
| set_limits    | -     | wards     | -       | all   |

"wards": only for patients in the wards named in the token; "all": every ward,
including patients with no ward and the audit trail itself (``access-*`` streams).
Auditors are read-only, but what they read is audited like everyone else's.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, get_args

from dashboards.tokens import Claims, Role

__all__ = ["Action", "ACTIONS", "PERMISSIONS", "may", "sees_all_wards", "may_see", "AUDIT_ONLY"]

Action = Literal["feed", "view_patient", "acknowledge", "silence", "escalate", "note", "set_limits"]
ACTIONS: tuple[Action, ...] = get_args(Action)

_CARE: frozenset[Action] = frozenset({"feed", "view_patient", "acknowledge", "silence", "escalate", "note"})

PERMISSIONS: Mapping[Role, frozenset[Action]] = MappingProxyType({
    "nurse": _CARE,
    "physician": _CARE | {"set_limits"},
    "auditor": frozenset({"feed", "view_patient"}),
    "admin": frozenset(ACTIONS),
})

_ALL_WARDS: frozenset[Role] = frozenset({"auditor", "admin"})

AUDIT_ONLY: None = None
"""The scope of events that belong to no ward (the audit trail, events about no
patient, patients with no ward when there is no default): only all-ward roles see them."""


def may(role: Role, action: Action) -> bool:
    return action in PERMISSIONS[role]


def sees_all_wards(role: Role) -> bool:
    return role in _ALL_WARDS


def may_see(claims: Claims, scope: str | None) -> bool:
    """Whether ``claims`` may receive data of ``scope``: a ward name, or `AUDIT_ONLY`."""
    return sees_all_wards(claims.role) or (scope is not None and scope in claims.wards)
