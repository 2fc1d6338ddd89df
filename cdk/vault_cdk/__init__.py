"""The vault's production deployment: one CDK stack per module, wired by :mod:`vault_cdk.app`."""
