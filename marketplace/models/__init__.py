"""SQLAlchemy models. Import from here: ``from marketplace.models import Opportunity``."""

from marketplace.models.accounts import Organization, User
from marketplace.models.audit import AuditEvent
from marketplace.models.entries import (
    Batch,
    EntryRevision,
    Opportunity,
    Product,
    ProductField,
    ProductTag,
)
from marketplace.models.enums import (
    BatchStatus,
    CooperationMode,
    EntryKind,
    EntryStatus,
    Maturity,
    OrgKind,
    RevisionStatus,
    Role,
    Tier,
)
from marketplace.models.matching import EmbeddingCache, IndexState
from marketplace.models.notifications import (
    EmailOutbox,
    MatchAlert,
    Notification,
    NotificationKind,
    NotificationPreference,
    OutboxStatus,
)
from marketplace.models.responses import (
    Consortium,
    ConsortiumMember,
    ConsortiumRole,
    InvitationStatus,
    Response,
    ResponseProduct,
    ResponseStatus,
)
from marketplace.models.uploads import StoredFile

__all__ = [
    "AuditEvent",
    "Consortium",
    "ConsortiumMember",
    "ConsortiumRole",
    "InvitationStatus",
    "Response",
    "ResponseProduct",
    "ResponseStatus",
    "StoredFile",
    "EmailOutbox",
    "MatchAlert",
    "Notification",
    "NotificationKind",
    "NotificationPreference",
    "OutboxStatus",
    "Batch",
    "BatchStatus",
    "CooperationMode",
    "EmbeddingCache",
    "EntryKind",
    "EntryRevision",
    "EntryStatus",
    "IndexState",
    "Maturity",
    "Opportunity",
    "OrgKind",
    "Organization",
    "Product",
    "ProductField",
    "ProductTag",
    "RevisionStatus",
    "Role",
    "Tier",
    "User",
]
