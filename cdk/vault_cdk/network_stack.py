"""Network: an isolated VPC whose only ways out are VPC endpoints (spec 7.1).

No internet gateway, no NAT, no public subnet. The subnets are the upstream /24 blocks:
API subnets 10.0.0.0/24 and 10.0.1.0/24, instance subnets 10.0.4.0/24 and 10.0.5.0/24
(the two /24 in between are reserved, as upstream leaves them unused). The DNS firewall
answers only names under AWS's domains and the vault's own endpoint. The stack also holds
the KMS key every log group of the deployment is encrypted with, as it deploys before any
other stack with log groups.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53resolver as resolver
from aws_cdk import custom_resources as cr
from constructs import Construct

from .config import VaultConfig
from .guardrails import acknowledge, managed_policy_finding

API_SUBNETS = "api"
#: Construct id of the singleton function behind every AwsCustomResource in a stack.
AWS_SDK_PROVIDER_ID = "AWS679f53fac002430cb0da5b7982bd2287"
INSTANCE_SUBNETS = "instance"
HTTPS = 443

#: AWS-owned buckets the instances read through the S3 gateway endpoint: the AL2023
#: package repositories, the SSM agent and its documents, CloudFormation's wait-condition
#: bucket and the bucket ACM for Nitro Enclaves publishes certificates to.
AWS_OWNED_BUCKETS = (
    "al2023-repos-{r}-de612dc2",
    "al2023-{r}",
    "aws-ssm-{r}",
    "amazon-ssm-{r}",
    "amazon-ssm-packages-{r}",
    "{r}-birdwatcher-prod",
    "aws-ssm-distributor-file-{r}",
    "aws-ssm-document-attachments-{r}",
    "patch-baseline-snapshot-{r}",
    "amazoncloudwatch-agent-{r}",
    "amazoncloudwatch-agent",
    "prod-{r}-starport-layer-bucket",
    "cloudformation-waitcondition-{r}",
    "aws-ec2-enclave-certificate-{r}-prod",
)


class NetworkStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: VaultConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.vpc_cidr = config.vpc_cidr
        account_only = {"StringEquals": {"aws:PrincipalAccount": self.account}}

        self.log_key = self._log_key()
        flow_log_group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.RETAIN,
            encryption_key=self.log_key,
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(config.vpc_cidr),
            max_azs=2,
            nat_gateways=0,
            create_internet_gateway=False,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            # Nothing uses the default security group; closing it keeps it that way.
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name=API_SUBNETS, subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                ),
                ec2.SubnetConfiguration(
                    name="unused", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24, reserved=True
                ),
                ec2.SubnetConfiguration(
                    name=INSTANCE_SUBNETS, subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                ),
            ],
            flow_logs={
                "All": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                )
            },
        )
        self.api_subnets = ec2.SubnetSelection(subnet_group_name=API_SUBNETS)
        self.instance_subnets = ec2.SubnetSelection(subnet_group_name=INSTANCE_SUBNETS)

        self._gateway_endpoints()
        self.endpoint_security_group = self._interface_endpoints(config, account_only)
        if config.enable_dns_firewall:
            self._dns_firewall(config)

        # Security groups narrow HTTPS egress to the gateway endpoints by prefix list; the
        # ids differ per region, so they are looked up at deploy time, keeping synth offline.
        self.s3_prefix_list_id = self._prefix_list("S3PrefixList", "s3")
        self.dynamodb_prefix_list_id = self._prefix_list("DynamoDbPrefixList", "dynamodb")
        # Both lookups share one provider function, a direct child of the stack.
        provider = self.node.try_find_child(AWS_SDK_PROVIDER_ID)
        if provider is not None:
            acknowledge(
                provider,
                {
                    managed_policy_finding("service-role/AWSLambdaBasicExecutionRole"): (
                        "Logging permissions of CDK's provider function for the two read-only lookups."
                    ),
                },
            )

        CfnOutput(self, "VpcId", value=self.vpc.vpc_id)
        CfnOutput(self, "VpcCidr", value=self.vpc.vpc_cidr_block)
        CfnOutput(
            self,
            "ApiSubnetIds",
            value=",".join(self.vpc.select_subnets(subnet_group_name=API_SUBNETS).subnet_ids),
        )
        CfnOutput(
            self,
            "InstanceSubnetIds",
            value=",".join(self.vpc.select_subnets(subnet_group_name=INSTANCE_SUBNETS).subnet_ids),
        )

    def _log_key(self) -> kms.Key:
        """The key every log group of the deployment is encrypted with."""
        key = kms.Key(
            self,
            "LogKey",
            description="nitro-vault log groups",
            enable_key_rotation=True,
            # Retained log groups stay readable only while their key exists.
            removal_policy=RemovalPolicy.RETAIN,
        )
        # CloudWatch Logs encrypts for log groups of this account and region only.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")],
                actions=[
                    "kms:Decrypt",
                    "kms:DescribeKey",
                    "kms:Encrypt",
                    "kms:GenerateDataKey*",
                    "kms:ReEncrypt*",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{self.partition}:logs:{self.region}:{self.account}:log-group:*"
                        )
                    }
                },
            )
        )
        return key

    def _gateway_endpoints(self) -> None:
        s3 = self.vpc.add_gateway_endpoint(
            "S3Endpoint", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.instance_subnets]
        )
        owned = [
            f"arn:{self.partition}:s3:::{bucket.format(r=self.region)}/*" for bucket in AWS_OWNED_BUCKETS
        ]
        # The package repositories are read anonymously, so this statement cannot require
        # a principal of this account; it is limited to reads of AWS's own buckets instead.
        s3.add_to_policy(
            iam.PolicyStatement(
                sid="AwsOwnedBuckets",
                principals=[iam.AnyPrincipal()],
                actions=["s3:GetObject"],
                resources=owned,
            )
        )
        s3.add_to_policy(
            iam.PolicyStatement(
                sid="OwnAccountObjects",
                principals=[iam.AnyPrincipal()],
                actions=["s3:GetObject"],
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:PrincipalAccount": self.account, "s3:ResourceAccount": self.account}
                },
            )
        )
        dynamodb = self.vpc.add_gateway_endpoint(
            "DynamoDbEndpoint", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB, subnets=[self.api_subnets]
        )
        dynamodb.add_to_policy(
            iam.PolicyStatement(
                sid="OwnAccountTables",
                principals=[iam.AnyPrincipal()],
                actions=["dynamodb:*"],
                resources=["*"],
                conditions={
                    "StringEquals": {
                        "aws:PrincipalAccount": self.account,
                        "aws:ResourceAccount": self.account,
                    }
                },
            )
        )

    def _interface_endpoints(self, config: VaultConfig, account_only: dict[str, Any]) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="Interface endpoints: HTTPS from inside the VPC only, no egress",
            allow_all_outbound=False,
        )
        group.add_ingress_rule(ec2.Peer.ipv4(config.vpc_cidr), ec2.Port.tcp(HTTPS), "HTTPS from the VPC")

        def endpoint(
            name: str,
            service: ec2.InterfaceVpcEndpointAwsService,
            subnets: ec2.SubnetSelection,
            actions: list[str],
        ) -> None:
            interface = self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=subnets,
                security_groups=[group],
                private_dns_enabled=True,
                open=False,
            )
            interface.add_to_policy(
                iam.PolicyStatement(
                    principals=[iam.AnyPrincipal()], actions=actions, resources=["*"], conditions=account_only
                )
            )

        # The enclave reaches KMS through the vsock-proxy on the instance, the API function
        # directly; only the calls the vault makes can pass (Sign and GetPublicKey: the API's
        # decrypt authorizations, decision D16).
        endpoint(
            "KmsEndpoint",
            ec2.InterfaceVpcEndpointAwsService.KMS,
            self.api_subnets,
            ["kms:Decrypt", "kms:GenerateDataKeyPairWithoutPlaintext", "kms:GetPublicKey", "kms:Sign"],
        )
        # cfn-signal from the instances' user data.
        endpoint(
            "CloudFormationEndpoint",
            ec2.InterfaceVpcEndpointAwsService.CLOUDFORMATION,
            self.instance_subnets,
            ["cloudformation:DescribeStackResource", "cloudformation:SignalResource"],
        )
        if config.enable_remote_access:
            for name, service in (
                ("SsmEndpoint", ec2.InterfaceVpcEndpointAwsService.SSM),
                ("SsmMessagesEndpoint", ec2.InterfaceVpcEndpointAwsService.SSM_MESSAGES),
                ("Ec2MessagesEndpoint", ec2.InterfaceVpcEndpointAwsService.EC2_MESSAGES),
            ):
                endpoint(name, service, self.instance_subnets, ["ssm:*", "ssmmessages:*", "ec2messages:*"])
        return group

    def _dns_firewall(self, config: VaultConfig) -> None:
        allowed = resolver.CfnFirewallDomainList(
            self, "AllowedDomains", domains=[config.domain_name, "*.amazonaws.com", "*.api.aws"]
        )
        everything = resolver.CfnFirewallDomainList(self, "AllDomains", domains=["*"])
        rules = resolver.CfnFirewallRuleGroup(
            self,
            "WalledGarden",
            firewall_rules=[
                resolver.CfnFirewallRuleGroup.FirewallRuleProperty(
                    action="ALLOW", firewall_domain_list_id=allowed.attr_id, priority=1
                ),
                resolver.CfnFirewallRuleGroup.FirewallRuleProperty(
                    action="BLOCK",
                    block_response="NODATA",
                    firewall_domain_list_id=everything.attr_id,
                    priority=2,
                ),
            ],
        )
        resolver.CfnFirewallRuleGroupAssociation(
            self,
            "WalledGardenAssociation",
            firewall_rule_group_id=rules.attr_id,
            vpc_id=self.vpc.vpc_id,
            priority=101,
            mutation_protection="DISABLED",
        )

    def _prefix_list(self, construct_id: str, service: str) -> str:
        call = cr.AwsSdkCall(
            service="EC2",
            action="describeManagedPrefixLists",
            parameters={
                "Filters": [
                    {"Name": "prefix-list-name", "Values": [f"com.amazonaws.{self.region}.{service}"]}
                ]
            },
            physical_resource_id=cr.PhysicalResourceId.of(f"{service}-prefix-list"),
            output_paths=["PrefixLists.0.PrefixListId"],
        )
        lookup = cr.AwsCustomResource(
            self,
            construct_id,
            on_create=call,
            on_update=call,
            install_latest_aws_sdk=False,
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [iam.PolicyStatement(actions=["ec2:DescribeManagedPrefixLists"], resources=["*"])]
            ),
        )
        acknowledge(
            lookup,
            {
                "AwsSolutions-IAM5[Resource::*]": (
                    "ec2:DescribeManagedPrefixLists has no resource-level permissions; the call is read-only."
                ),
            },
        )
        return lookup.get_response_field("PrefixLists.0.PrefixListId")
