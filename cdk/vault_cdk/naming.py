"""Fixed names of the IAM objects that other stacks and the key policy refer to.

The key policy must name the instance role and the API role by ARN at synth time, and
PCR3 is a hash of the instance role's ARN. Giving these roles fixed names under the
``/vault/`` path makes their ARNs a pure function of (partition, account, prefix), so the
key stack can be complete (PCRs included) before any role exists, with no post-deploy
step and no window without attestation (decision D13).
"""

from __future__ import annotations

from dataclasses import dataclass

from vault.infra.key_policy import pcr3_for_role_arn

from .config import VaultConfig

ROLE_PATH = "/vault/"


@dataclass(frozen=True)
class Names:
    config: VaultConfig

    @property
    def instance_role_name(self) -> str:
        return f"{self.config.prefix}-instance"

    @property
    def api_role_name(self) -> str:
        return f"{self.config.prefix}-api"

    @property
    def api_function_name(self) -> str:
        return f"{self.config.prefix}-api"

    @property
    def boundary_name(self) -> str:
        return f"{self.config.prefix}-boundary"

    def _iam_arn(self, kind: str, name: str) -> str:
        return f"arn:{self.config.partition}:iam::{self.config.account}:{kind}{ROLE_PATH}{name}"

    @property
    def instance_role_arn(self) -> str:
        return self._iam_arn("role", self.instance_role_name)

    @property
    def api_role_arn(self) -> str:
        return self._iam_arn("role", self.api_role_name)

    @property
    def boundary_arn(self) -> str:
        return self._iam_arn("policy", self.boundary_name)

    @property
    def pcr3(self) -> str:
        """PCR3 of an enclave on the vault instances: SHA-384(48 zero bytes || instance role ARN)."""
        return pcr3_for_role_arn(self.instance_role_arn)
