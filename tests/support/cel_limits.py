"""CEL limits for tests about what expressions mean, shared by the unit and property suites."""

from __future__ import annotations

from dataclasses import replace

from vault.enclave.cel.limits import CelLimits

#: The default limits but for time: a busy machine (parallel test workers) can stretch a
#: trivial evaluation past the 2 s request bound. The time budgets have tests of their own,
#: with engines built for them.
SEMANTICS_LIMITS = replace(CelLimits(), max_expression_seconds=30.0, max_seconds=60.0)
