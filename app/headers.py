"""The security and cache headers every answer carries: the middleware adds them, and the
handler of unexpected errors (which Starlette runs outside the middleware) adds them itself."""

from __future__ import annotations

# No inline script anywhere: pages load their JS from /static. Images may be blob: for previews.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


# Where a response does not say otherwise it is not stored by browsers or proxies: pages and API answers
# show one user's data, and Back after log-out must not show a logged-in page from the cache.
NO_STORE = (b"cache-control", b"no-store")
