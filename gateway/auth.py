"""Bearer tokens with roles. Off when no token is configured (local `make up`)."""

from __future__ import annotations

import hmac
from pathlib import Path

from kubetune.common.v1 import options_pb2
from services.common.errors import InvalidArgument, PermissionDenied, Unauthenticated

ROLES = {"viewer": options_pb2.ROLE_VIEWER, "editor": options_pb2.ROLE_EDITOR, "admin": options_pb2.ROLE_ADMIN}
ROLE_NAMES = {v: k for k, v in ROLES.items()}


def parse_tokens(inline: str, file: str = "") -> dict[str, int]:
    """`token:role,token:role` and/or a file of `token role` lines (a mounted Secret)."""
    pairs: list[tuple[str, str]] = []
    for item in filter(None, (p.strip() for p in inline.split(","))):
        token, _, role = item.rpartition(":")
        pairs.append((token, role))
    if file:
        for line in Path(file).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                token, _, role = line.rpartition(" ")
                pairs.append((token.strip(), role.strip()))
    tokens = {}
    for token, role in pairs:
        if not token or role not in ROLES:
            raise InvalidArgument(f"gateway tokens: each entry needs a token and a role ({', '.join(ROLES)})")
        tokens[token] = ROLES[role]
    return tokens


class Authenticator:
    def __init__(self, tokens: dict[str, int]):
        self.tokens = tokens

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def role_of(self, metadata) -> int:
        """The caller's role; raises UNAUTHENTICATED for a missing or unknown token."""
        if not self.enabled:
            return options_pb2.ROLE_ADMIN
        header = next((v for k, v in metadata if k == "authorization"), "")
        if not header.lower().startswith("bearer "):
            raise Unauthenticated("missing bearer token: send `authorization: Bearer <token>`")
        presented = header[7:].strip().encode()
        role = 0
        # Every token is compared, in constant time, so timing tells nothing.
        for token, token_role in self.tokens.items():
            if hmac.compare_digest(presented, token.encode()):
                role = token_role
        if not role:
            raise Unauthenticated("invalid token")
        return role

    def check(self, metadata, required: int, method: str) -> int:
        role = self.role_of(metadata)
        if role < required:
            raise PermissionDenied(f"{method} needs the {ROLE_NAMES[required]} role; your token is {ROLE_NAMES[role]}")
        return role
