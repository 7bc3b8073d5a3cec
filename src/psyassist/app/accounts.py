"""Accounts, passwords (argon2id), login sessions and login rate limiting.

    psyassist app user add counselor-7 --role counselor

- Passwords: argon2id (argon2-cffi's defaults: RFC 9106's low-memory profile, 64 MiB, 3 passes);
  a hash made with older parameters is upgraded at the next login.
- Sessions: a random 256-bit token in an HttpOnly, SameSite=Strict cookie; the database keeps
  only its SHA-256, so a database leak gives no usable cookie.  Each session has its own CSRF
  token.  Sessions expire after `session_hours` without activity and on logout.
- Login rate limit: after `login_max_failures` failed logins for one account (or 4× that from
  one address) within `login_window_minutes`, further attempts get 429 until the window passes,
  even with the right password.  Kept in the database, so several app processes share it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select

from psyassist.app.store.db import Database
from psyassist.app.store.models import AuthSession, LoginAttempt, User, utcnow
from psyassist.errors import PsyassistError

ROLES = ("admin", "counselor")
LOCALES = ("en", "zh")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
MIN_PASSWORD = 10
_hasher = PasswordHasher()
# Verifying against this makes an unknown username cost as much time as a wrong password.
_DUMMY = _hasher.hash("psyassist-dummy-password")


class AuthError(PsyassistError):
    pass


class RateLimited(AuthError):
    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"too many failed logins; try again in {max(1, retry_after // 60)} minute(s)")


@dataclass(frozen=True)
class Actor:
    """The signed-in account a request acts as."""
    id: str
    username: str
    display_name: str
    role: str
    locale: str
    note_template: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def actor_of(u: User) -> Actor:
    return Actor(u.id, u.username, u.display_name or u.username, u.role, u.locale, u.note_template)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"a password needs at least {MIN_PASSWORD} characters")
    if password.strip() != password or not password.strip():
        raise AuthError("a password cannot start or end with spaces")


def create_user(db: Database, username: str, password: str, *, role: str = "counselor", display_name: str = "",
                locale: str = "en", must_change_password: bool = False) -> User:
    if not USERNAME.match(username or ""):
        raise AuthError("a username is 2-64 characters: letters, digits, '.', '_' or '-', starting with a letter "
                        "or digit")
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    if locale not in LOCALES:
        raise AuthError(f"language must be one of {', '.join(LOCALES)}")
    check_password_strength(password)
    with db.write() as s:
        if s.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
            raise AuthError(f"the username {username!r} is taken")
        u = User(username=username, display_name=display_name.strip()[:128], password_hash=_hasher.hash(password),
                 role=role, locale=locale, note_template="seed004", active=True,
                 must_change_password=must_change_password)
        s.add(u)
        s.flush()
        return u


def set_password(db: Database, user_id: str, password: str, *, must_change: bool = False) -> None:
    check_password_strength(password)
    with db.write() as s:
        u = s.get(User, user_id)
        if u is None:
            raise AuthError("no such account")
        u.password_hash = _hasher.hash(password)
        u.must_change_password = must_change
        s.execute(delete(AuthSession).where(AuthSession.user_id == user_id))  # other logins end
    forget_sessions(user_id=user_id)


def _limited(s, username: str, ip: str, max_failures: int, window: timedelta) -> int | None:
    """Seconds to wait, or None: counts failures since the last success within the window."""
    since = utcnow() - window
    for col, value, cap in ((LoginAttempt.username, username.lower(), max_failures),
                            (LoginAttempt.ip, ip, max_failures * 4)):
        last_ok = s.scalar(select(func.max(LoginAttempt.at)).where(col == value, LoginAttempt.ok.is_(True),
                                                                   LoginAttempt.at >= since))
        start = max(since, last_ok) if last_ok else since
        fails = s.scalars(select(LoginAttempt.at).where(col == value, LoginAttempt.ok.is_(False),
                                                        LoginAttempt.at >= start).order_by(LoginAttempt.at)).all()
        if len(fails) >= cap:
            return int((fails[-cap] + window - utcnow()).total_seconds()) + 1
    return None


def authenticate(db: Database, username: str, password: str, ip: str, *, max_failures: int,
                 window_minutes: int) -> User:
    window = timedelta(minutes=window_minutes)
    with db.read() as s:
        wait = _limited(s, username, ip, max_failures, window)
        u = s.scalar(select(User).where(func.lower(User.username) == username.lower()))
    if wait is not None:
        _note(db, username, ip, False)
        raise RateLimited(wait)
    ok = False
    try:
        ok = _hasher.verify(u.password_hash if u else _DUMMY, password) and u is not None and u.active
    except (VerificationError, InvalidHashError):
        ok = False
    _note(db, username, ip, ok)
    if not ok:
        raise AuthError("wrong username or password")
    if _hasher.check_needs_rehash(u.password_hash):
        with db.write() as s:
            s.get(User, u.id).password_hash = _hasher.hash(password)
    return u


def _note(db: Database, username: str, ip: str, ok: bool) -> None:
    with db.write() as s:
        s.add(LoginAttempt(username=username.lower()[:64], ip=ip[:64], ok=ok))
        # Old attempts are useless after the window; keep the table small.
        s.execute(delete(LoginAttempt).where(LoginAttempt.at < utcnow() - timedelta(days=1)))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(db: Database, user: User, hours: float) -> tuple[str, str]:
    """(cookie token, csrf token) of a new login session."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with db.write() as s:
        s.add(AuthSession(id=token_hash(token), user_id=user.id, csrf=csrf, expires_at=utcnow() + timedelta(hours=hours)))
    return token, csrf


_SESSIONS: dict[str, tuple[float, Actor, str, datetime]] = {}  # token hash -> (cached at, actor, csrf, expires)
_SESSIONS_LOCK = threading.Lock()
SESSION_CACHE_SECONDS = 5.0  # another process's logout or deactivation takes effect within this long


def resolve_session(db: Database, token: str | None, hours: float) -> tuple[Actor, str, str] | None:
    """(actor, csrf token, session id) for a live session cookie, sliding its expiry; None otherwise.

    One joined query, cached for a few seconds per session (a page load makes several requests);
    this process's own logouts, password changes and deactivations drop the cache at once."""
    if not token:
        return None
    sid = token_hash(token)
    now = utcnow()
    mono = time.monotonic()
    with _SESSIONS_LOCK:
        hit = _SESSIONS.get(sid)
    if hit and mono - hit[0] < SESSION_CACHE_SECONDS and hit[3] > now:
        return hit[1], hit[2], sid
    with db.read() as s:
        row = s.execute(select(AuthSession, User).join(User, User.id == AuthSession.user_id)
                        .where(AuthSession.id == sid)).first()
        if row is None:
            return None
        sess, u = row
        if sess.expires_at < now or not u.active:
            return None
        actor, csrf, seen = actor_of(u), sess.csrf, sess.last_seen_at
    expires = sess.expires_at
    if (now - seen).total_seconds() > 60:  # slide the expiry at most once a minute: no write per request
        expires = now + timedelta(hours=hours)
        with db.write() as s:
            r = s.get(AuthSession, sid)
            if r is not None:
                r.last_seen_at, r.expires_at = now, expires
    with _SESSIONS_LOCK:
        _SESSIONS[sid] = (mono, actor, csrf, expires)
        if len(_SESSIONS) > 10_000:
            _SESSIONS.clear()
    return actor, csrf, sid


def forget_sessions(*, sid: str | None = None, user_id: str | None = None) -> None:
    """Drop cached sessions: one (logout) or all of a user's (password change, deactivation, settings)."""
    with _SESSIONS_LOCK:
        if sid is not None:
            _SESSIONS.pop(sid, None)
        if user_id is not None:
            for k in [k for k, v in _SESSIONS.items() if v[1].id == user_id]:
                del _SESSIONS[k]


def end_session(db: Database, sid: str) -> None:
    with db.write() as s:
        s.execute(delete(AuthSession).where(AuthSession.id == sid))
    forget_sessions(sid=sid)


def ensure_admin(db: Database) -> tuple[str, str] | None:
    """On first start: create the admin account with a random password; (username, password) or None."""
    with db.read() as s:
        if s.scalar(select(func.count()).select_from(User).where(User.role == "admin")):
            return None
    password = secrets.token_urlsafe(12)
    create_user(db, "admin", password, role="admin", display_name="Administrator", must_change_password=True)
    return "admin", password
