"""All models, imported here so Alembic and the app see one metadata.

Each area owns its own module; add new ones to this list.
"""
from app.models.audit import AuditEvent
from app.models.base import Base, utcnow
from app.models.email_token import EmailToken, TokenPurpose
from app.models.oauth import OAuthAuthorizationCode, OAuthClient, OAuthToken
from app.models.outbound_email import OutboundEmail
from app.models.recording import Recording
from app.models.scim import Group, GroupMember, ScimDetachedUser, ScimRequestLog, ScimToken, ScimUserName
from app.models.user import User, UserSource, UserStatus
from app.models.user_purge import PurgeState, UserPurge
from app.models.sso import RecoveryCode, SamlLoginLog, SamlReplay, SamlRequest, SsoCertificate, SsoConnection  # noqa: F401
from app.models.workspace import Plan, Role, Workspace

__all__ = [
    "AuditEvent", "Base", "Group", "GroupMember", "ScimDetachedUser", "ScimRequestLog", "ScimToken", "ScimUserName", "EmailToken", "OutboundEmail", "Plan", "Recording", "Role", "TokenPurpose",
    "User", "UserSource", "UserStatus", "Workspace", "utcnow",
]
from app.models.domains import Domain, DomainMethod, DomainStatus  # noqa: E402,F401  (authorized domains)
