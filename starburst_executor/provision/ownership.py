"""Which existing resources ``starburst setup`` may change: only those tagged as its own.

A resource of the same name that lacks the tag ``starburst:managed=true`` (someone else's role,
a bucket made by hand) stops setup with a :class:`ConfigError` saying how to adopt it (tag it, or
``--adopt``) or how to use another name.  With ``adopt``, setup tags it and then manages it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _tags
from ..errors import ConfigError
from .common import is_managed
from .steps import Context

__all__ = ["claim", "TAG_TEXT"]

TAG_TEXT = f"{_tags.MANAGED_KEY}={_tags.MANAGED_VALUE}"


def claim(ctx: Context, kind: str, name: str, tags: Any, tag_it: Callable[[], Any],
          *, tag_command: str, rename: str) -> list[str]:
    """The changes needed to own an existing resource: none when it carries the tag; a tagging
    with ``adopt`` (made by ``tag_it`` unless this is a dry run); else :class:`ConfigError`.

    Args:
        kind, name: what it is ("IAM role", "S3 bucket") and its name, for the message.
        tags: its tags, in any shape :func:`~.common.is_managed` reads.
        tag_it: adds the tag.
        tag_command: the AWS CLI command that tags it, for the message.
        rename: how to use another name instead, for the message.
    """
    if is_managed(tags):
        return []
    if not getattr(ctx.options, "adopt", False):
        raise ConfigError(
            f"{kind} {name} exists but was not created by starburst setup (it lacks the tag "
            f"{TAG_TEXT}), so setup will not change it. To let setup manage it, run "
            f"`starburst setup --adopt` or tag it yourself ({tag_command}); otherwise {rename}.")
    if not ctx.dry_run:
        tag_it()
    return [f"adopt: tag {TAG_TEXT}"]
