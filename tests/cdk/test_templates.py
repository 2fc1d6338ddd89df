"""Instance configuration templates (spec 3.6)."""

from __future__ import annotations

import pytest
from vault_cdk.templates import TemplateError, render


def test_missing_values_are_refused() -> None:
    with pytest.raises(TemplateError, match="domain_name"):
        render("nginx.conf")


def test_nginx_matches_the_upstream_front() -> None:
    text = render("nginx.conf", domain_name="vault.example.com")
    for directive in (
        "listen 443 ssl;",
        "http2 on;",
        "ssl_protocols TLSv1.2;",
        "ssl_engine pkcs11;",
        'include "/etc/pki/nginx/nginx-acm.conf";',
        "worker_connections 4000;",
        "proxy_set_header X-Forwarded-Proto https;",
        "server_tokens off;",
    ):
        assert directive in text


def test_allocator_and_unit() -> None:
    assert "cpu_count: 3" in render("allocator.yaml", allocator_memory_mib="3072", allocator_cpu_count="3")
    unit = render(
        "vault-parent.service",
        role_name="r",
        eif_path="/e.eif",
        enclave_cpu_count="1",
        enclave_memory_mib="2816",
    )
    assert "--role r" in unit and "Requires=nitro-enclaves-allocator.service" in unit
    assert "Environment=PARENT_ENCLAVE_CPU_COUNT=1\n" in unit
    assert "Environment=PARENT_ENCLAVE_MEMORY_MIB=2816\n" in unit
