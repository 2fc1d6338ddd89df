"""Configuration files of the parent instances, rendered into their user data.

Placeholders are ``{{name}}`` so that NGINX's and the shell's own ``$`` syntax passes
through untouched. Values may be CDK tokens (the region, the certificate ARN); the
rendered text is a string CloudFormation joins at deploy time.
"""

from __future__ import annotations

import re
from importlib import resources

_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")


class TemplateError(KeyError):
    pass


def render(name: str, **values: str) -> str:
    """Fill ``{{placeholders}}`` of a template in ``vault_cdk/templates``; every one must be given."""
    text = resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise TemplateError(f"{name} needs a value for {{{{{key}}}}}")
        return values[key]

    return _PLACEHOLDER.sub(substitute, text)
