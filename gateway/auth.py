"""Bearer tokens with roles. Off when no token is configured (local `make up`).
A tokens file (a mounted Secret) is read again when it changes: no restart needed."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

from kubetune.common.v1 import options_pb2
from kubetune_common.errors import InvalidArgument, PermissionDenied, Unauthenticated

ROLES = {"viewer": options_pb2.ROLE_VIEWER, "editor": options_pb2.ROLE_EDITOR, "admin": options_pb2.ROLE_ADMIN}
ROLE_NAMES = {v: k for k, v in ROLES.items()}
# How often, at most, the tokens file is looked at (one stat) for a change.
RELOAD_EVERY_S = 1.0

log = logging.getLogger(__name__)


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


def _file_state(file: str):
    # A Kubernetes Secret volume swaps a symlink: stat follows it to the new file.
    try:
        st = os.stat(file)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class Authenticator:
    def __init__(self, tokens: dict[str, int], *, inline: str = "", file: str = ""):
        self.tokens = tokens
        self._inline, self._file = inline, file
        self._state = _file_state(file) if file else None
        self._checked = time.monotonic()

    @classmethod
    def from_settings(cls, inline: str, file: str) -> "Authenticator":
        return cls(parse_tokens(inline, file), inline=inline, file=file)

    def reload_if_changed(self) -> None:
        """Reads the tokens file again if it changed since it was last read. A file that
        does not parse (or is gone) keeps the tokens in force, and says why in the log."""
        now = time.monotonic()
        if not self._file or now - self._checked < RELOAD_EVERY_S:
            return
        self._checked = now
        state = _file_state(self._file)
        if state == self._state:
            return
        try:
            tokens = parse_tokens(self._inline, self._file)
        except (OSError, InvalidArgument) as exc:
            log.error("tokens file %s changed but cannot be used (%s); keeping the %d tokens in force",
                      self._file, exc, len(self.tokens))
            return
        finally:
            self._state = state
        if not tokens:
            log.error("tokens file %s is now empty; keeping the %d tokens in force (auth stays on)",
                      self._file, len(self.tokens))
            return
        self.tokens = tokens
        log.info("tokens file changed: %d tokens now", len(tokens))

    @property
    def tokens(self) -> dict[str, int]:
        return self._tokens

    @tokens.setter
    def tokens(self, tokens: dict[str, int]) -> None:
        # Looked up by SHA-256 digest, one dict lookup a call whatever the number of tokens:
        # how long a lookup takes can tell a caller about the digest of what it sent, which
        # says nothing usable about any token (comparing each token in constant time, as
        # before, cost a comparison per configured token on every call).
        self._tokens = tokens
        self._roles = {_digest(token.encode()): role for token, role in tokens.items()}

    @property
    def enabled(self) -> bool:
        self.reload_if_changed()
        return bool(self.tokens)

    def role_of(self, metadata) -> int:
        """The caller's role; raises UNAUTHENTICATED for a missing or unknown token."""
        if not self.enabled:
            return options_pb2.ROLE_ADMIN
        header = next((v for k, v in metadata if k == "authorization"), "")
        if not header.lower().startswith("bearer "):
            raise Unauthenticated("missing bearer token: send `authorization: Bearer <token>`")
        role = self._roles.get(_digest(header[7:].strip().encode()), 0)
        if not role:
            raise Unauthenticated("invalid token")
        return role

    def check(self, metadata, required: int, method: str) -> int:
        role = self.role_of(metadata)
        if role < required:
            raise PermissionDenied(f"{method} needs the {ROLE_NAMES[required]} role; your token is {ROLE_NAMES[role]}")
        return role
