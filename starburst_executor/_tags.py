"""Tags on every AWS resource the project creates, so `starburst cleanup` can find them."""

from __future__ import annotations

MANAGED_KEY = "starburst:managed"
MANAGED_VALUE = "true"
SESSION_KEY = "starburst:session"


def resource_tags(session_id: str | None = None) -> dict[str, str]:
    """The tags for a resource, as a plain mapping (convert to each API's own shape)."""
    tags = {MANAGED_KEY: MANAGED_VALUE}
    if session_id:
        tags[SESSION_KEY] = session_id
    return tags
