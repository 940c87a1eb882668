"""The console's own configuration, read from the environment by `smq web`: who may act, and the key
that signs their sessions. Kept apart from `smq.settings.Settings`, which every worker carries: these
are credentials, and only the console needs them.

SMQ_WEB_USERS   `name:HASH[,name:HASH...]`, each HASH from `smq web --hash-password` (scrypt). None:
                the console is read-only and says so.
SMQ_WEB_SECRET  signs session cookies (default: a random key per start, so a restart logs everybody out).
SMQ_WEB_SECURE_COOKIES  `on` behind HTTPS: cookies are sent over HTTPS only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass, field

from smq.settings import SettingsError

# scrypt's cost: about 50 ms and 16 MiB per check on a small server; stored with each hash, so it can move.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
USER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$SALT$HASH` (base64): what SMQ_WEB_USERS holds, never the password."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    encode = base64.urlsafe_b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"


def _parse_hash(name: str, text: str) -> tuple[int, int, int, bytes, bytes]:
    try:
        scheme, n, r, p, salt, digest = text.split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        return int(n), int(r), int(p), base64.urlsafe_b64decode(salt), base64.urlsafe_b64decode(digest)
    except ValueError:
        raise SettingsError(
            f"SMQ_WEB_USERS: the hash of user {name!r} is not one `smq web --hash-password` prints"
        ) from None


def verify_password(stored: str, password: str) -> bool:
    n, r, p, salt, digest = _parse_hash("?", stored)
    candidate = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(digest), maxmem=2**26)
    return hmac.compare_digest(candidate, digest)


@dataclass(frozen=True)
class WebConfig:
    users: dict[str, str] = field(default_factory=dict)  # name -> scrypt hash
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    secure_cookies: bool = False

    @property
    def read_only(self) -> bool:
        return not self.users

    def authenticate(self, name: str, password: str) -> bool:
        stored = self.users.get(name)
        if stored is None:
            hash_password(password)  # as slow as a real check: no timing tells which names exist
            return False
        return verify_password(stored, password)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> WebConfig:
        env = dict(os.environ if environ is None else environ)
        users: dict[str, str] = {}
        for item in (part.strip() for part in env.get("SMQ_WEB_USERS", "").split(",")):
            if not item:
                continue
            name, sep, stored = item.partition(":")
            if not sep or not USER_NAME.fullmatch(name):
                raise SettingsError(
                    f"SMQ_WEB_USERS: {name!r} is not NAME:HASH with NAME of letters, digits, '_.@-'"
                )
            if name in users:
                raise SettingsError(f"SMQ_WEB_USERS: user {name!r} is given twice")
            _parse_hash(name, stored)
            users[name] = stored
        secret = env.get("SMQ_WEB_SECRET") or ""
        if secret and len(secret) < 16:
            raise SettingsError("SMQ_WEB_SECRET: use at least 16 characters")
        flag = (env.get("SMQ_WEB_SECURE_COOKIES") or "off").strip().lower()
        if flag not in ("on", "off", "1", "0", "true", "false"):
            raise SettingsError(f"SMQ_WEB_SECURE_COOKIES must be on or off, got {flag!r}")
        return cls(
            users=users,
            secret=secret or secrets.token_urlsafe(32),
            secure_cookies=flag in ("on", "1", "true"),
        )
