"""What this service provider supports, described once: the User, Group and role
extension schemas, and the discovery documents built from them
(RFC 7643 §5-7, RFC 7644 §4)."""
from __future__ import annotations

from dataclasses import dataclass, field

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GATEHOUSE_USER = "urn:ietf:params:scim:schemas:extension:gatehouse:2.0:User"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"

ROLES = ("admin", "creator", "creator_lite")
MAX_RESULTS = 200


@dataclass(frozen=True)
class Attr:
    name: str
    type: str = "string"
    description: str = ""
    multi: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: str = "readWrite"
    returned: str = "default"
    uniqueness: str = "none"
    canonical: tuple[str, ...] = ()
    sub: tuple["Attr", ...] = ()
    reference_types: tuple[str, ...] = ()

    def child(self, name: str) -> "Attr | None":
        return _by_name(self.sub, name)

    def to_dict(self) -> dict:
        out = {"name": self.name, "type": self.type, "multiValued": self.multi, "description": self.description,
               "required": self.required, "caseExact": self.case_exact, "mutability": self.mutability,
               "returned": self.returned, "uniqueness": self.uniqueness}
        if self.canonical:
            out["canonicalValues"] = list(self.canonical)
        if self.reference_types:
            out["referenceTypes"] = list(self.reference_types)
        if self.sub:
            out["subAttributes"] = [s.to_dict() for s in self.sub]
        return out


@dataclass(frozen=True)
class Schema:
    id: str
    name: str
    description: str
    attributes: tuple[Attr, ...] = field(default_factory=tuple)

    def attr(self, name: str) -> Attr | None:
        return _by_name(self.attributes, name)


def _by_name(attrs, name: str):
    lowered = name.lower()
    return next((a for a in attrs if a.name.lower() == lowered), None)


_TYPE = Attr("type", description="A label for the address; Gatehouse keeps one work address.",
             canonical=("work", "home", "other"))

USER_SCHEMA = Schema(CORE_USER, "User", "A member of the workspace.", (
    Attr("userName", required=True, uniqueness="server",
         description="The IdP's name for the member, unique in the workspace (any case); usually the work email "
                     "address, and then the member's address unless emails gives another."),
    Attr("name", "complex", "The member's name.", sub=(
        Attr("formatted", description="The full name (read from givenName and familyName)."),
        Attr("familyName", description="Family name."),
        Attr("givenName", description="Given name."),
    )),
    Attr("displayName", description="The name shown in the product."),
    Attr("emails", "complex", "The member's one address, used to sign in: the primary one sent, else the work "
                              "one, else the first.", multi=True, sub=(
        Attr("value", description="Email address."),
        Attr("display", description="A label for the address."),
        _TYPE,
        Attr("primary", "boolean", "Always true: the member has one address."),
    )),
    Attr("active", "boolean", "false deactivates the member (data kept); true reactivates."),
    Attr("password", description="Accepted and ignored: members sign in through SSO.", mutability="writeOnly",
         returned="never"),
    Attr("groups", "complex", "Groups the member belongs to.", multi=True, mutability="readOnly", sub=(
        Attr("value", description="Group id.", mutability="readOnly"),
        Attr("$ref", "reference", "Group URI.", mutability="readOnly", reference_types=("Group",)),
        Attr("display", description="Group name.", mutability="readOnly"),
        Attr("type", description="direct", mutability="readOnly", canonical=("direct",)),
    )),
))

ROLE_SCHEMA = Schema(GATEHOUSE_USER, "GatehouseUser", "The member's role in the workspace.", (
    Attr("role", description="admin, creator or creator_lite; missing gives the workspace's default role.",
         canonical=ROLES),
))

GROUP_SCHEMA = Schema(CORE_GROUP, "Group", "A group of members.", (
    Attr("displayName", required=True, uniqueness="server", description="The group's name, unique in the workspace."),
    Attr("members", "complex", "The group's members (users).", multi=True, sub=(
        Attr("value", description="User id.", mutability="immutable"),
        Attr("$ref", "reference", "User URI.", mutability="immutable", reference_types=("User",)),
        Attr("display", description="The member's email.", mutability="readOnly"),
        Attr("type", description="User", mutability="immutable", canonical=("User",)),
    )),
))

SCHEMAS = {s.id: s for s in (USER_SCHEMA, ROLE_SCHEMA, GROUP_SCHEMA)}

# Core User attributes from RFC 7643 that Gatehouse has no use for: accepted and
# ignored (IdPs send them by default), never stored or returned.
IGNORED_USER_ATTRIBUTES = frozenset(a.lower() for a in (
    "nickName", "profileUrl", "title", "userType", "preferredLanguage", "locale", "timezone", "phoneNumbers",
    "ims", "photos", "addresses", "entitlements", "roles", "x509Certificates",
))
IGNORED_NAME_PARTS = frozenset(("middlename", "honorificprefix", "honorificsuffix"))
IGNORED_SCHEMAS = frozenset((ENTERPRISE_USER.lower(),))


def _meta(base: str, resource_type: str, path: str) -> dict:
    return {"resourceType": resource_type, "location": f"{base}{path}"}


def schema_documents(base: str) -> list[dict]:
    return [{"schemas": [SCHEMA_SCHEMA], "id": s.id, "name": s.name, "description": s.description,
             "attributes": [a.to_dict() for a in s.attributes], "meta": _meta(base, "Schema", f"/Schemas/{s.id}")}
            for s in SCHEMAS.values()]


def resource_type_documents(base: str) -> list[dict]:
    return [
        {"schemas": [RESOURCE_TYPE_SCHEMA], "id": "User", "name": "User", "endpoint": "/Users",
         "description": "Workspace members", "schema": CORE_USER,
         "schemaExtensions": [{"schema": GATEHOUSE_USER, "required": False}],
         "meta": _meta(base, "ResourceType", "/ResourceTypes/User")},
        {"schemas": [RESOURCE_TYPE_SCHEMA], "id": "Group", "name": "Group", "endpoint": "/Groups",
         "description": "Groups of members", "schema": CORE_GROUP, "schemaExtensions": [],
         "meta": _meta(base, "ResourceType", "/ResourceTypes/Group")},
    ]


def service_provider_config(base: str, docs_url: str) -> dict:
    return {
        "schemas": [SPC_SCHEMA],
        "documentationUri": docs_url,
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": True},
        "authenticationSchemes": [{
            "type": "oauthbearertoken", "name": "OAuth Bearer Token", "primary": True,
            "description": "A Gatehouse SCIM token, or an OAuth 2.0 access token from 'Authenticate with Gatehouse'.",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "documentationUri": docs_url,
        }],
        "meta": {**_meta(base, "ServiceProviderConfig", "/ServiceProviderConfig")},
    }
