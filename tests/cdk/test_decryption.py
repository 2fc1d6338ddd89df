"""The decryption tier (spec 7.4): enclave-enabled instances behind an internal TLS-passthrough NLB."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from vault_cdk.decryption_stack import ASG_LOGICAL_ID, VAULT_ENCLAVE_MEMORY_MIB

from .helpers import only, resources, statements
from .support import DOMAIN, Synthesized


@pytest.fixture(scope="module")
def tier(vault: Synthesized) -> dict[str, Any]:
    return dict(vault.raw("decryption"))


@pytest.fixture(scope="module")
def launch_data(tier: dict[str, Any]) -> dict[str, Any]:
    return dict(only(tier, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"])


def user_data_text(launch_data: dict[str, Any]) -> str:
    value = launch_data["UserData"]["Fn::Base64"]
    if isinstance(value, str):
        return value
    return "".join(part if isinstance(part, str) else json.dumps(part) for part in value["Fn::Join"][1])


def test_enclaves_and_imdsv2(launch_data: dict[str, Any]) -> None:
    assert launch_data["EnclaveOptions"] == {"Enabled": True}
    assert launch_data["MetadataOptions"] == {
        "HttpEndpoint": "enabled",
        "HttpTokens": "required",
        "HttpPutResponseHopLimit": 1,
        "InstanceMetadataTags": "enabled",
    }
    assert (
        launch_data["ImageId"]
        == "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-minimal-kernel-6.12-arm64"
    )
    ebs = launch_data["BlockDeviceMappings"][0]["Ebs"]
    assert ebs == {"VolumeSize": 20, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}
    assert launch_data["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert "InstanceType" not in launch_data


def test_graviton_instance_requirements(tier: dict[str, Any]) -> None:
    asg = only(tier, "AWS::AutoScaling::AutoScalingGroup")
    overrides = asg["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
    requirements = overrides[0]["InstanceRequirements"]
    assert requirements["CpuManufacturers"] == ["amazon-web-services"]
    assert requirements["VCpuCount"]["Min"] >= 4
    assert requirements["BurstablePerformance"] == "excluded"
    assert requirements["BareMetal"] == "excluded"
    distribution = asg["MixedInstancesPolicy"]["InstancesDistribution"]
    assert distribution["OnDemandBaseCapacity"] == 1
    assert distribution["SpotAllocationStrategy"] == "price-capacity-optimized"


def test_auto_scaling_group_signals_and_updates(tier: dict[str, Any]) -> None:
    resource = tier["Resources"][ASG_LOGICAL_ID]
    props = resource["Properties"]
    assert (props["MinSize"], props["MaxSize"], props["DesiredCapacity"]) == ("1", "2", "1")
    assert props["HealthCheckType"] == "ELB"
    assert props["MaxInstanceLifetime"] == 86400
    assert props["CapacityRebalance"] is True
    assert resource["CreationPolicy"]["ResourceSignal"]["Count"] == 1
    rolling = resource["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["WaitOnResourceSignals"] is True
    assert rolling["MinInstancesInService"] == 1
    text = user_data_text(only(tier, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"])
    assert f'--resource "{ASG_LOGICAL_ID}"' in text


def test_user_data_installs_the_parent_and_its_services(launch_data: dict[str, Any]) -> None:
    text = user_data_text(launch_data)
    for expected in (
        "aws-nitro-enclaves-cli",
        "aws-nitro-enclaves-acm",
        "cpu_count: 3",
        "memory_mib: 3072",
        "ssl_engine pkcs11;",
        f"server_name {DOMAIN};",
        "proxy_pass http://127.0.0.1:8080;",
        "$proxy_add_x_forwarded_for",
        "label: nginx-acm-token",
        "vault-parent --host 127.0.0.1 --port 8080 --role nitro-vault-instance",
        '"nitro-vault[parent]"',
        "/home/ec2-user/enclave-vault.eif",
        "nitro-enclaves-vsock-proxy.service",
        "signal 0",
    ):
        assert expected in text, expected
    assert "{{" not in text


def installed_file(text: str, path: str) -> str:
    """The body of the here-document that the user data writes to ``path``."""
    match = re.search(rf"cat > {re.escape(path)} <<'VAULT_EOF'\n(.*?)\nVAULT_EOF\n", text, re.DOTALL)
    assert match is not None, path
    return match.group(1)


def setting(text: str, pattern: str) -> int:
    match = re.search(pattern, text, re.MULTILINE)
    assert match is not None, pattern
    return int(match.group(1))


def test_the_parent_launches_the_vault_enclave_into_what_the_allocator_reserves(
    launch_data: dict[str, Any],
) -> None:
    text = user_data_text(launch_data)
    allocator = installed_file(text, "/etc/nitro_enclaves/allocator.yaml")
    acm = installed_file(text, "/etc/nitro_enclaves/acm.yaml")
    unit = installed_file(text, "/etc/systemd/system/vault-parent.service")
    vault_memory = setting(unit, r"^Environment=PARENT_ENCLAVE_MEMORY_MIB=(\d+)$")
    vault_cpus = setting(unit, r"^Environment=PARENT_ENCLAVE_CPU_COUNT=(\d+)$")
    assert vault_memory == VAULT_ENCLAVE_MEMORY_MIB == 2816
    # The allocator reserves exactly the ACM enclave plus one vault enclave.
    assert setting(allocator, r"^memory_mib: (\d+)$") == setting(acm, r"^  memory_mib: (\d+)$") + vault_memory
    assert setting(allocator, r"^cpu_count: (\d+)$") == setting(acm, r"^  cpu_count: (\d+)$") + vault_cpus


def test_certificate_and_role_association(tier: dict[str, Any]) -> None:
    certificate = only(tier, "AWS::CertificateManager::Certificate")
    assert certificate["DomainName"] == DOMAIN
    assert certificate["ValidationMethod"] == "DNS"
    association = only(tier, "AWS::EC2::EnclaveCertificateIamRoleAssociation")
    assert association["RoleArn"].endswith(":role/vault/nitro-vault-instance")
    profile = only(tier, "AWS::IAM::InstanceProfile")
    assert profile["Roles"] == ["nitro-vault-instance"] and profile["Path"] == "/vault/"
    policy = next(
        p["Properties"]
        for name, p in resources(tier, "AWS::IAM::Policy").items()
        if name.startswith("InstancePolicy")
    )
    assert policy["Roles"] == ["nitro-vault-instance"]
    assert {s["Sid"] for s in statements(policy["PolicyDocument"])} == {
        "EnclaveCertificate",
        "EnclaveCertificateKey",
        "OwnRole",
        "Artifacts",
        "BootstrapSignal",
    }


def test_internal_nlb_passes_tls_through(tier: dict[str, Any]) -> None:
    nlb = only(tier, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert nlb["Scheme"] == "internal" and nlb["Type"] == "network"
    attributes = {a["Key"]: a["Value"] for a in nlb["LoadBalancerAttributes"]}
    assert attributes["load_balancing.cross_zone.enabled"] == "false"
    listener = only(tier, "AWS::ElasticLoadBalancingV2::Listener")
    assert (listener["Port"], listener["Protocol"]) == (443, "TCP")
    group = only(tier, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert (group["Port"], group["Protocol"], group["TargetType"]) == (443, "TCP", "instance")
    assert group["HealthCheckIntervalSeconds"] == 5 and group["HealthCheckTimeoutSeconds"] == 2
    target_attributes = {a["Key"]: a["Value"] for a in group["TargetGroupAttributes"]}
    assert target_attributes["deregistration_delay.timeout_seconds"] == "0"
    assert target_attributes["deregistration_delay.connection_termination.enabled"] == "true"
    assert target_attributes["preserve_client_ip.enabled"] == "true"
    record = only(tier, "AWS::Route53::RecordSet")
    assert record["Type"] == "A" and record["Name"] == f"{DOMAIN}."
    assert "AliasTarget" in record


def test_scaling_alarms_and_composite_scale_in(tier: dict[str, Any]) -> None:
    alarms = {
        a["Properties"]["MetricName"] + a["Properties"]["ComparisonOperator"]: a["Properties"]
        for a in resources(tier, "AWS::CloudWatch::Alarm").values()
    }
    assert len(alarms) == 7
    assert alarms["HealthyHostCountLessThanThreshold"]["TreatMissingData"] == "breaching"
    policies = [p["Properties"] for p in resources(tier, "AWS::AutoScaling::ScalingPolicy").values()]
    assert sorted(p["ScalingAdjustment"] for p in policies) == [-1, 1, 1]
    composite = only(tier, "AWS::CloudWatch::CompositeAlarm")
    rule = json.dumps(composite["AlarmRule"])
    assert rule.count("ALARM(") == 2 and " AND " in rule
    permission = only(tier, "AWS::Lambda::Permission")
    assert permission["Principal"] == "lambda.alarms.cloudwatch.amazonaws.com"
    function = only(tier, "AWS::Lambda::Function")
    assert set(function["Environment"]["Variables"]) == {"ASG_NAME", "POLICY_NAME"}
    assert function["Timeout"] == 30


def test_security_groups_only_carry_tls(tier: dict[str, Any]) -> None:
    for group in resources(tier, "AWS::EC2::SecurityGroup").values():
        props = group["Properties"]
        for rule in props.get("SecurityGroupIngress", []) + props.get("SecurityGroupEgress", []):
            assert (rule["FromPort"], rule["ToPort"]) == (443, 443), rule
    for kind in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress"):
        for rule in resources(tier, kind).values():
            assert (rule["Properties"]["FromPort"], rule["Properties"]["ToPort"]) == (443, 443)
