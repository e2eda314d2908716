"""The LangSmith API client (HTTP only) and its typed records."""

from langsmith_access.langsmith.client import LangSmithClient, Listing, ListingRead, ListingSink
from langsmith_access.langsmith.errors import (
    AuthenticationError,
    ConflictError,
    IncompleteListingError,
    LangSmithError,
    NotFoundError,
    NotLangSmithAPIError,
    PermissionDeniedError,
    RequestRejectedError,
    RouteNotAvailableError,
    TransientError,
    UnexpectedResponseError,
)
from langsmith_access.langsmith.pacing import CallStats, RateLimiter
from langsmith_access.langsmith.records import (
    EnrichedMember,
    OrgMember,
    PendingInvite,
    Role,
    Workspace,
    WorkspaceMember,
    WorkspaceMembership,
)

__all__ = [
    "AuthenticationError",
    "CallStats",
    "ConflictError",
    "EnrichedMember",
    "IncompleteListingError",
    "LangSmithClient",
    "LangSmithError",
    "Listing",
    "ListingRead",
    "ListingSink",
    "NotFoundError",
    "NotLangSmithAPIError",
    "OrgMember",
    "PendingInvite",
    "PermissionDeniedError",
    "RateLimiter",
    "RequestRejectedError",
    "Role",
    "RouteNotAvailableError",
    "TransientError",
    "UnexpectedResponseError",
    "Workspace",
    "WorkspaceMember",
    "WorkspaceMembership",
]
