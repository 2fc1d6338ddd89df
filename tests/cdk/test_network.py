"""The network stack: an isolated VPC reachable only through endpoints (spec 7.1)."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import resources, statements
from .support import ACCOUNT, DOMAIN, Synthesized


@pytest.fixture(scope="module")
def network(vault: Synthesized) -> dict[str, Any]:
    return dict(vault.raw("network"))


def test_no_internet_path(network: dict[str, Any], vault: Synthesized) -> None:
    for kind in (
        "AWS::EC2::InternetGateway",
        "AWS::EC2::VPCGatewayAttachment",
        "AWS::EC2::NatGateway",
        "AWS::EC2::EIP",
        "AWS::EC2::EgressOnlyInternetGateway",
    ):
        for tier in ("identity", "network", "key", "api", "decryption", "canary"):
            assert not resources(vault.raw(tier), kind), f"{tier} has {kind}"
    for route in resources(network, "AWS::EC2::Route").values():
        assert "DestinationCidrBlock" not in route["Properties"], route


def test_subnets_are_private_upstream_blocks(network: dict[str, Any]) -> None:
    subnets = resources(network, "AWS::EC2::Subnet")
    cidrs = sorted(s["Properties"]["CidrBlock"] for s in subnets.values())
    assert cidrs == ["10.0.0.0/24", "10.0.1.0/24", "10.0.4.0/24", "10.0.5.0/24"]
    for subnet in subnets.values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False
    vpc = next(iter(resources(network, "AWS::EC2::VPC").values()))["Properties"]
    assert vpc["CidrBlock"] == "10.0.0.0/16"
    assert vpc["EnableDnsHostnames"] is True and vpc["EnableDnsSupport"] is True


def _endpoints(network: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for endpoint in resources(network, "AWS::EC2::VPCEndpoint").values():
        props = endpoint["Properties"]
        service = props["ServiceName"]
        name = service if isinstance(service, str) else str(service)
        found[name.rsplit(".", 1)[-1] if isinstance(service, str) else _service_suffix(service)] = props
    return found


def _service_suffix(service: Any) -> str:
    parts = service["Fn::Join"][1]
    return str(parts[-1]).lstrip(".")


def test_endpoints_and_their_policies(network: dict[str, Any]) -> None:
    endpoints = _endpoints(network)
    assert set(endpoints) == {"s3", "dynamodb", "kms", "cloudformation"}
    assert endpoints["s3"]["VpcEndpointType"] == "Gateway"
    assert endpoints["dynamodb"]["VpcEndpointType"] == "Gateway"
    for name in ("kms", "cloudformation"):
        assert endpoints[name]["VpcEndpointType"] == "Interface"
        assert endpoints[name]["PrivateDnsEnabled"] is True
    kms_actions = sorted(
        action for s in statements(endpoints["kms"]["PolicyDocument"]) for action in s["Action"]
    )
    assert kms_actions == [
        "kms:Decrypt",
        "kms:GenerateDataKeyPairWithoutPlaintext",
        "kms:GetPublicKey",
        "kms:Sign",
    ]
    for name in ("kms", "cloudformation", "dynamodb"):
        for statement in statements(endpoints[name]["PolicyDocument"]):
            assert statement["Condition"]["StringEquals"]["aws:PrincipalAccount"] == ACCOUNT
    s3_reads = {s["Sid"]: s for s in statements(endpoints["s3"]["PolicyDocument"])}
    assert set(s3_reads) == {"AwsOwnedBuckets", "OwnAccountObjects"}
    assert all(s["Action"] == "s3:GetObject" for s in s3_reads.values())


def test_endpoint_security_group_is_locked_down(network: dict[str, Any]) -> None:
    groups = [
        g["Properties"]
        for g in resources(network, "AWS::EC2::SecurityGroup").values()
        if "Interface endpoints" in g["Properties"]["GroupDescription"]
    ]
    assert len(groups) == 1
    group = groups[0]
    assert group["SecurityGroupIngress"] == [
        {
            "CidrIp": "10.0.0.0/16",
            "Description": "HTTPS from the VPC",
            "FromPort": 443,
            "IpProtocol": "tcp",
            "ToPort": 443,
        }
    ]
    # CDK's marker for "no egress": a rule that matches nothing.
    assert [rule["CidrIp"] for rule in group["SecurityGroupEgress"]] == ["255.255.255.255/32"]


def test_dns_firewall_is_a_walled_garden(network: dict[str, Any]) -> None:
    lists = [
        p["Properties"]["Domains"]
        for p in resources(network, "AWS::Route53Resolver::FirewallDomainList").values()
    ]
    assert sorted(map(sorted, lists)) == [["*"], sorted([DOMAIN, "*.amazonaws.com", "*.api.aws"])]
    group = next(iter(resources(network, "AWS::Route53Resolver::FirewallRuleGroup").values()))["Properties"]
    rules = sorted(group["FirewallRules"], key=lambda r: r["Priority"])
    assert [(r["Priority"], r["Action"]) for r in rules] == [(1, "ALLOW"), (2, "BLOCK")]
    assert rules[1]["BlockResponse"] == "NODATA"
    association = next(
        iter(resources(network, "AWS::Route53Resolver::FirewallRuleGroupAssociation").values())
    )
    assert association["Properties"]["Priority"] == 101


def test_flow_logs_cover_the_vpc(network: dict[str, Any]) -> None:
    flow = next(iter(resources(network, "AWS::EC2::FlowLog").values()))["Properties"]
    assert flow["TrafficType"] == "ALL"
    assert flow["ResourceType"] == "VPC"
