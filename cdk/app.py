#!/usr/bin/env python3
"""The nitro-vault CDK app: see vault_cdk.application for the stacks and their order."""

from vault_cdk.main import main

if __name__ == "__main__":
    main()
