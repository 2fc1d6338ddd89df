"""Decryption tier: Nitro Enclaves parent instances behind an internal NLB (spec 7.4, 3.6).

TLS passes through the NLB to NGINX, whose certificate key lives in the ACM for Nitro
Enclaves enclave; NGINX forwards to the parent service on 127.0.0.1:8080, which talks to
the vault enclave over vsock. The instances have no route out except VPC endpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsii
from aws_cdk import (
    CfnAutoScalingRollingUpdate,
    CfnCreationPolicy,
    CfnOutput,
    CfnResourceAutoScalingCreationPolicy,
    CfnResourceSignal,
    CfnTag,
    CfnUpdatePolicy,
    Duration,
    Fn,
    RemovalPolicy,
    Stack,
)
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from vault.parent.config import DEFAULT_EIF_PATH

from .config import VaultConfig
from .guardrails import acknowledge, cfn_resource, managed_policy_finding, nag_text, skip_checkov
from .naming import ROLE_PATH, Names
from .network_stack import HTTPS, NetworkStack
from .packaging import ASSET_EXCLUDES
from .templates import render

FUNCTIONS = Path(__file__).resolve().parent / "functions"
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-minimal-kernel-6.12-arm64"
ASG_LOGICAL_ID = "VaultInstances"
#: Where the parent expects the EIF on the instance: the parent's own default, so the two agree.
EIF_PATH = DEFAULT_EIF_PATH
#: ACM for Nitro Enclaves' enclave (its documented default size).
ACM_ENCLAVE_CPUS = 2
ACM_ENCLAVE_MEMORY_MIB = 256
#: One vault enclave: 1 vCPU, and memory for a Python image held in RAM (the EIF's root
#: file system lives in enclave memory). Upstream's Rust enclave fitted in 512 MiB.
VAULT_ENCLAVE_CPUS = 1
VAULT_ENCLAVE_MEMORY_MIB = 2816
#: Graviton, at least 4 vCPUs (3 for enclaves, 1 for the parent) and enough memory for
#: the allocator plus the parent; no burstable or bare-metal sizes, no accelerators.
INSTANCE_REQUIREMENTS = autoscaling.CfnAutoScalingGroup.InstanceRequirementsProperty(
    v_cpu_count=autoscaling.CfnAutoScalingGroup.VCpuCountRequestProperty(min=4),
    memory_mib=autoscaling.CfnAutoScalingGroup.MemoryMiBRequestProperty(min=8192),
    cpu_manufacturers=["amazon-web-services"],
    instance_generations=["current"],
    accelerator_count=autoscaling.CfnAutoScalingGroup.AcceleratorCountRequestProperty(max=0),
    bare_metal="excluded",
    burstable_performance="excluded",
    # Graviton 1 (a1) cannot host enclaves.
    excluded_instance_types=["a1.*"],
)
SUSPENDED_DURING_UPDATE = [
    "HealthCheck",
    "ReplaceUnhealthy",
    "AZRebalance",
    "AlarmNotification",
    "ScheduledActions",
]


@jsii.implements(cloudwatch.IAlarmAction)
class _PolicyAction:
    """Alarm action that runs an Auto Scaling simple-scaling policy (an L1 resource)."""

    def __init__(self, policy_arn: str) -> None:
        self._policy_arn = policy_arn

    def bind(self, _scope: Construct, _alarm: cloudwatch.IAlarm) -> cloudwatch.AlarmActionConfig:
        return cloudwatch.AlarmActionConfig(alarm_action_arn=self._policy_arn)


class DecryptionStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: VaultConfig,
        network: NetworkStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        names = Names(config)
        zone = route53.HostedZone.from_hosted_zone_attributes(
            self, "Zone", hosted_zone_id=config.hosted_zone_id, zone_name=config.hosted_zone_name
        )
        role = iam.Role.from_role_arn(self, "InstanceRole", names.instance_role_arn)

        certificate = acm.Certificate(
            self,
            "Certificate",
            domain_name=config.domain_name,
            validation=acm.CertificateValidation.from_dns(zone),
        )
        association = ec2.CfnEnclaveCertificateIamRoleAssociation(
            self,
            "CertificateRoleAssociation",
            certificate_arn=certificate.certificate_arn,
            role_arn=names.instance_role_arn,
        )
        artifact_bucket, artifact_key = self._artifacts(config)

        instance_group, nlb_group = self._security_groups(network)
        self._instance_policy(config, role, association, artifact_bucket, artifact_key)
        profile = iam.CfnInstanceProfile(
            self, "InstanceProfile", roles=[names.instance_role_name], path=ROLE_PATH
        )

        user_data = self._user_data(config, names, certificate.certificate_arn, artifact_bucket, artifact_key)
        template = ec2.CfnLaunchTemplate(
            self,
            "LaunchTemplate",
            launch_template_data=ec2.CfnLaunchTemplate.LaunchTemplateDataProperty(
                # Resolved by EC2 at every launch, so the daily replacement picks up patched AMIs.
                image_id=f"resolve:ssm:{AMI_PARAMETER}",
                enclave_options=ec2.CfnLaunchTemplate.EnclaveOptionsProperty(enabled=True),
                metadata_options=ec2.CfnLaunchTemplate.MetadataOptionsProperty(
                    http_endpoint="enabled",
                    http_tokens="required",
                    # The parent reads credentials from IMDS itself; nothing forwarded may.
                    http_put_response_hop_limit=1,
                    instance_metadata_tags="enabled",
                ),
                block_device_mappings=[
                    ec2.CfnLaunchTemplate.BlockDeviceMappingProperty(
                        device_name="/dev/xvda",
                        ebs=ec2.CfnLaunchTemplate.EbsProperty(
                            volume_size=20, volume_type="gp3", encrypted=True, delete_on_termination=True
                        ),
                    )
                ],
                ebs_optimized=True,
                monitoring=ec2.CfnLaunchTemplate.MonitoringProperty(enabled=True),
                iam_instance_profile=ec2.CfnLaunchTemplate.IamInstanceProfileProperty(arn=profile.attr_arn),
                security_group_ids=[instance_group.security_group_id],
                instance_initiated_shutdown_behavior="terminate",
                user_data=Fn.base64(user_data),
                tag_specifications=[
                    ec2.CfnLaunchTemplate.TagSpecificationProperty(
                        resource_type=kind,
                        tags=[
                            CfnTag(key="Name", value=config.prefix),
                            CfnTag(key="InstanceRoleArn", value=names.instance_role_arn),
                        ],
                    )
                    for kind in ("instance", "volume")
                ],
            ),
        )

        nlb, target_group = self._load_balancer(network, nlb_group)
        asg = self._auto_scaling_group(network, template, target_group)
        record = route53.ARecord(
            self,
            "Endpoint",
            zone=zone,
            record_name=config.domain_name,
            target=route53.RecordTarget.from_alias(targets.LoadBalancerTarget(nlb)),
        )
        # Route 53 stops answering with a zone whose targets are all unhealthy.
        cfn_resource(record).add_property_override("AliasTarget.EvaluateTargetHealth", True)
        self._scaling(config, asg, nlb, target_group, network.log_key)

        CfnOutput(self, "VaultUrl", value=f"https://{config.domain_name}")
        CfnOutput(self, "AutoScalingGroupName", value=asg.ref)
        CfnOutput(self, "Pcr3", value=names.pcr3)

    def _artifacts(self, config: VaultConfig) -> tuple[s3.IBucket, str]:
        source = config.artifacts
        if source.bucket is not None and source.key is not None:
            return s3.Bucket.from_bucket_name(self, "ArtifactBucket", source.bucket), source.key
        asset = s3_assets.Asset(self, "Artifacts", path=str(source.directory))
        return asset.bucket, asset.s3_object_key

    def _security_groups(self, network: NetworkStack) -> tuple[ec2.SecurityGroup, ec2.SecurityGroup]:
        instance_group = ec2.SecurityGroup(
            self,
            "InstanceSecurityGroup",
            vpc=network.vpc,
            description="Vault parents: TLS from the NLB; HTTPS to S3 and the VPC endpoints",
            allow_all_outbound=False,
        )
        nlb_group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurityGroup",
            vpc=network.vpc,
            description="Vault NLB: TLS from inside the VPC to the parents",
            allow_all_outbound=False,
        )
        nlb_group.add_ingress_rule(ec2.Peer.ipv4(network.vpc_cidr), ec2.Port.tcp(HTTPS), "TLS from the VPC")
        nlb_group.add_egress_rule(instance_group, ec2.Port.tcp(HTTPS), "TLS to the parents")
        instance_group.add_ingress_rule(nlb_group, ec2.Port.tcp(HTTPS), "TLS from the NLB")
        instance_group.add_egress_rule(
            ec2.Peer.prefix_list(network.s3_prefix_list_id), ec2.Port.tcp(HTTPS), "S3 (packages, artifacts)"
        )
        instance_group.add_egress_rule(
            ec2.Peer.ipv4(network.vpc_cidr), ec2.Port.tcp(HTTPS), "KMS and CloudFormation endpoints"
        )
        return instance_group, nlb_group

    def _instance_policy(
        self,
        config: VaultConfig,
        role: iam.IRole,
        association: ec2.CfnEnclaveCertificateIamRoleAssociation,
        artifact_bucket: s3.IBucket,
        artifact_key: str,
    ) -> None:
        names = Names(config)
        policy = iam.Policy(
            self,
            "InstancePolicy",
            roles=[role],
            statements=[
                # What ACM for Nitro Enclaves needs to fetch and unwrap the certificate.
                iam.PolicyStatement(
                    sid="EnclaveCertificate",
                    actions=["s3:GetObject"],
                    resources=[
                        f"arn:{config.partition}:s3:::{association.attr_certificate_s3_bucket_name}/*"
                    ],
                ),
                iam.PolicyStatement(
                    sid="EnclaveCertificateKey",
                    actions=["kms:Decrypt"],
                    resources=[
                        f"arn:{config.partition}:kms:{self.region}:*:key/{association.attr_encryption_kms_key_id}"
                    ],
                ),
                iam.PolicyStatement(
                    sid="OwnRole", actions=["iam:GetRole"], resources=[names.instance_role_arn]
                ),
                iam.PolicyStatement(
                    sid="Artifacts",
                    actions=["s3:GetObject"],
                    resources=[artifact_bucket.arn_for_objects(artifact_key)],
                ),
                iam.PolicyStatement(
                    sid="BootstrapSignal",
                    actions=["cloudformation:DescribeStackResource", "cloudformation:SignalResource"],
                    resources=[self.stack_id],
                ),
            ],
        )
        # How cdk-nag spells the association's attributes in its finding ids.
        attribute = f"<{self.get_logical_id(association)}.{{}}>"
        bucket = attribute.format("CertificateS3BucketName")
        key_id = attribute.format("EncryptionKmsKeyId")
        key_arn = f"arn:{config.partition}:kms:{nag_text(self.region)}:*:key/{key_id}"
        acknowledge(
            policy,
            {
                f"AwsSolutions-IAM5[Resource::arn:{config.partition}:s3:::{bucket}/*]": (
                    "ACM for Nitro Enclaves publishes the certificate under a key chosen by the service, "
                    "in a bucket dedicated to this certificate association."
                ),
                f"AwsSolutions-IAM5[Resource::{key_arn}]": (
                    "The certificate's wrapping key belongs to an AWS-owned account not known in advance; "
                    "the key id is pinned."
                ),
            },
        )

    def _user_data(
        self, config: VaultConfig, names: Names, certificate_arn: str, bucket: s3.IBucket, key: str
    ) -> str:
        region = self.region
        files = {
            "allocator_yaml": render(
                "allocator.yaml",
                allocator_memory_mib=str(ACM_ENCLAVE_MEMORY_MIB + VAULT_ENCLAVE_MEMORY_MIB),
                allocator_cpu_count=str(ACM_ENCLAVE_CPUS + VAULT_ENCLAVE_CPUS),
            ),
            "vsock_proxy_yaml": render("vsock-proxy.yaml", region=region),
            "acm_yaml": render(
                "acm.yaml",
                certificate_arn=certificate_arn,
                acm_cpu_count=str(ACM_ENCLAVE_CPUS),
                acm_memory_mib=str(ACM_ENCLAVE_MEMORY_MIB),
            ),
            "acm_proxy_conf": render("acm-proxy.conf", region=region),
            "openssl_acm_cnf": render("openssl-acm.cnf"),
            "nginx_conf": render("nginx.conf", domain_name=config.domain_name),
            "parent_unit": render(
                "vault-parent.service",
                role_name=names.instance_role_name,
                eif_path=EIF_PATH,
                enclave_cpu_count=str(VAULT_ENCLAVE_CPUS),
                enclave_memory_mib=str(VAULT_ENCLAVE_MEMORY_MIB),
            ),
        }
        return render(
            "user-data.sh",
            region=region,
            stack_name=self.stack_name,
            asg_logical_id=ASG_LOGICAL_ID,
            artifact_bucket=bucket.bucket_name,
            artifact_key=key,
            eif_path=EIF_PATH,
            **{name: text.rstrip("\n") for name, text in files.items()},
        )

    def _load_balancer(
        self, network: NetworkStack, group: ec2.SecurityGroup
    ) -> tuple[elbv2.NetworkLoadBalancer, elbv2.NetworkTargetGroup]:
        nlb = elbv2.NetworkLoadBalancer(
            self,
            "LoadBalancer",
            vpc=network.vpc,
            vpc_subnets=network.instance_subnets,
            internet_facing=False,
            ip_address_type=elbv2.IpAddressType.IPV4,
            security_groups=[group],
            cross_zone_enabled=False,
            client_routing_policy=elbv2.ClientRoutingPolicy.AVAILABILITY_ZONE_AFFINITY,
            zonal_shift=True,
            enforce_security_group_inbound_rules_on_private_link_traffic=False,
        )
        target_group = elbv2.NetworkTargetGroup(
            self,
            "Parents",
            vpc=network.vpc,
            port=HTTPS,
            protocol=elbv2.Protocol.TCP,
            target_type=elbv2.TargetType.INSTANCE,
            deregistration_delay=Duration.seconds(0),
            connection_termination=True,
            preserve_client_ip=True,
            health_check=elbv2.HealthCheck(
                protocol=elbv2.Protocol.TCP,
                port=str(HTTPS),
                interval=Duration.seconds(5),
                timeout=Duration.seconds(2),
                healthy_threshold_count=2,
                unhealthy_threshold_count=2,
            ),
        )
        nlb.add_listener("Tls", port=HTTPS, protocol=elbv2.Protocol.TCP, default_target_groups=[target_group])
        no_access_logs = (
            "The listener is TCP passthrough (TLS ends in NGINX with an enclave-held key); NLB "
            "access logs exist only for TLS listeners. Flow logs cover the VPC."
        )
        acknowledge(nlb, {"AwsSolutions-ELB2": no_access_logs})
        skip_checkov(nlb, {"CKV_AWS_91": no_access_logs})
        return nlb, target_group

    def _auto_scaling_group(
        self, network: NetworkStack, template: ec2.CfnLaunchTemplate, target_group: elbv2.NetworkTargetGroup
    ) -> autoscaling.CfnAutoScalingGroup:
        asg = autoscaling.CfnAutoScalingGroup(
            self,
            ASG_LOGICAL_ID,
            min_size="1",
            max_size="2",
            desired_capacity="1",
            vpc_zone_identifier=network.vpc.select_subnets(subnet_group_name="instance").subnet_ids,
            mixed_instances_policy=autoscaling.CfnAutoScalingGroup.MixedInstancesPolicyProperty(
                launch_template=autoscaling.CfnAutoScalingGroup.LaunchTemplateProperty(
                    launch_template_specification=autoscaling.CfnAutoScalingGroup.LaunchTemplateSpecificationProperty(
                        launch_template_id=template.ref, version=template.attr_latest_version_number
                    ),
                    overrides=[
                        autoscaling.CfnAutoScalingGroup.LaunchTemplateOverridesProperty(
                            instance_requirements=INSTANCE_REQUIREMENTS
                        )
                    ],
                ),
                instances_distribution=autoscaling.CfnAutoScalingGroup.InstancesDistributionProperty(
                    on_demand_base_capacity=1,
                    on_demand_percentage_above_base_capacity=0,
                    on_demand_allocation_strategy="lowest-price",
                    spot_allocation_strategy="price-capacity-optimized",
                ),
            ),
            health_check_type="ELB",
            health_check_grace_period=10,
            default_instance_warmup=10,
            # Each scaling policy sets its own cooldown; this default only covers others.
            cooldown="300",
            # Daily replacement: no instance (and no enclave) lives longer than a day.
            max_instance_lifetime=86400,
            capacity_rebalance=True,
            availability_zone_distribution=autoscaling.CfnAutoScalingGroup.AvailabilityZoneDistributionProperty(
                capacity_distribution_strategy="balanced-best-effort"
            ),
            availability_zone_impairment_policy=autoscaling.CfnAutoScalingGroup.AvailabilityZoneImpairmentPolicyProperty(
                impaired_zone_health_check_behavior="IgnoreUnhealthy", zonal_shift_enabled=True
            ),
            instance_maintenance_policy=autoscaling.CfnAutoScalingGroup.InstanceMaintenancePolicyProperty(
                min_healthy_percentage=100, max_healthy_percentage=200
            ),
            termination_policies=["OldestInstance", "OldestLaunchTemplate"],
            target_group_arns=[target_group.target_group_arn],
        )
        asg.override_logical_id(ASG_LOGICAL_ID)
        # The bootstrap installs packages and the parent; allow for a slow mirror.
        asg.cfn_options.creation_policy = CfnCreationPolicy(
            resource_signal=CfnResourceSignal(count=1, timeout="PT10M"),
            auto_scaling_creation_policy=CfnResourceAutoScalingCreationPolicy(
                min_successful_instances_percent=100
            ),
        )
        asg.cfn_options.update_policy = CfnUpdatePolicy(
            auto_scaling_rolling_update=CfnAutoScalingRollingUpdate(
                min_instances_in_service=1,
                max_batch_size=2,
                pause_time="PT10M",
                wait_on_resource_signals=True,
                suspend_processes=SUSPENDED_DURING_UPDATE,
            )
        )
        acknowledge(
            asg,
            {
                "AwsSolutions-EC26": (
                    "The rule cannot follow the launch template reference; the template's only volume "
                    "is encrypted (BlockDeviceMappings Ebs.Encrypted = true)."
                ),
                "AwsSolutions-AS3": (
                    "Scaling is driven by the alarms of this stack, whose state changes are the "
                    "notifications; the activity history records every launch and termination."
                ),
            },
        )
        return asg

    def _scaling(
        self,
        config: VaultConfig,
        asg: autoscaling.CfnAutoScalingGroup,
        nlb: elbv2.NetworkLoadBalancer,
        target_group: elbv2.NetworkTargetGroup,
        log_key: kms.IKey,
    ) -> None:
        thresholds = config.scaling
        minute = Duration.minutes(1)
        lb_dims = {"LoadBalancer": nlb.load_balancer_full_name}
        tg_dims = {**lb_dims, "TargetGroup": target_group.target_group_full_name}

        def nlb_metric(name: str, statistic: str, dims: dict[str, str]) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/NetworkELB",
                metric_name=name,
                statistic=statistic,
                period=minute,
                dimensions_map=dims,
            )

        cpu = cloudwatch.Metric(
            namespace="AWS/EC2",
            metric_name="CPUUtilization",
            statistic="Average",
            period=minute,
            dimensions_map={"AutoScalingGroupName": asg.ref},
        )

        def policy(construct_id: str, adjustment: int, cooldown: int) -> autoscaling.CfnScalingPolicy:
            return autoscaling.CfnScalingPolicy(
                self,
                construct_id,
                auto_scaling_group_name=asg.ref,
                policy_type="SimpleScaling",
                adjustment_type="ChangeInCapacity",
                scaling_adjustment=adjustment,
                cooldown=str(cooldown),
            )

        scale_out = policy("ScaleOut", 1, 300)
        no_healthy_host = policy("ScaleOutNoHealthyHost", 1, 300)
        scale_in = policy("ScaleIn", -1, 600)

        def alarm(
            construct_id: str,
            metric: cloudwatch.Metric,
            threshold: float,
            operator: cloudwatch.ComparisonOperator,
            periods: int = 3,
            missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
        ) -> cloudwatch.Alarm:
            return cloudwatch.Alarm(
                self,
                construct_id,
                metric=metric,
                threshold=threshold,
                comparison_operator=operator,
                evaluation_periods=periods,
                treat_missing_data=missing,
            )

        above = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        below = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
        for construct_id, metric, threshold in (
            (
                "HighActiveFlows",
                nlb_metric("ActiveFlowCount", "Average", lb_dims),
                thresholds.active_flows_high,
            ),
            (
                "HighProcessedBytes",
                nlb_metric("ProcessedBytes", "Sum", tg_dims),
                thresholds.processed_bytes_high,
            ),
            ("HighNewFlows", nlb_metric("NewFlowCount", "Sum", lb_dims), thresholds.new_flows_high),
            ("HighCpu", cpu, thresholds.cpu_high),
        ):
            alarm(construct_id, metric, threshold, above).add_alarm_action(_PolicyAction(scale_out.attr_arn))
        alarm(
            "NoHealthyHost",
            nlb_metric("HealthyHostCount", "Minimum", tg_dims),
            1,
            below,
            periods=2,
            missing=cloudwatch.TreatMissingData.BREACHING,
        ).add_alarm_action(_PolicyAction(no_healthy_host.attr_arn))

        # Scale in only when both load signals are low for ten minutes.
        low_flows = alarm(
            "LowActiveFlows",
            nlb_metric("ActiveFlowCount", "Average", lb_dims),
            thresholds.active_flows_low,
            below,
            10,
        )
        low_cpu = alarm("LowCpu", cpu, thresholds.cpu_low, below, 10)
        composite = cloudwatch.CompositeAlarm(
            self,
            "ScaleInWhenIdle",
            alarm_rule=cloudwatch.AlarmRule.all_of(
                cloudwatch.AlarmRule.from_alarm(low_flows, cloudwatch.AlarmState.ALARM),
                cloudwatch.AlarmRule.from_alarm(low_cpu, cloudwatch.AlarmState.ALARM),
            ),
        )
        composite.add_alarm_action(cw_actions.LambdaAction(self._scale_in_function(asg, scale_in, log_key)))

    def _scale_in_function(
        self, asg: autoscaling.CfnAutoScalingGroup, policy: autoscaling.CfnScalingPolicy, log_key: kms.IKey
    ) -> lambda_.Function:
        # A composite alarm cannot run a scaling policy itself; this function does it for it.
        log_group = logs.LogGroup(
            self,
            "ScaleInLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
            encryption_key=log_key,
        )
        function = lambda_.Function(
            self,
            "ScaleInFunction",
            runtime=lambda_.Runtime.PYTHON_3_14,
            architecture=lambda_.Architecture.ARM_64,
            handler="index.handler",
            code=lambda_.Code.from_asset(str(FUNCTIONS / "scale_in"), exclude=ASSET_EXCLUDES),
            timeout=Duration.seconds(30),
            memory_size=128,
            # One run at a time is all scale-in needs; a flapping alarm cannot run it in parallel.
            reserved_concurrent_executions=1,
            log_group=log_group,
            environment={"ASG_NAME": asg.ref, "POLICY_NAME": policy.ref},
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["autoscaling:ExecutePolicy"],
                resources=[
                    f"arn:{self.partition}:autoscaling:{self.region}:{self.account}:autoScalingGroup:*:"
                    f"autoScalingGroupName/{asg.ref}"
                ],
            )
        )
        acknowledge(
            function,
            {
                managed_policy_finding("service-role/AWSLambdaBasicExecutionRole"): (
                    "Logging permissions of a function that only executes one scaling policy."
                ),
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:autoscaling:{nag_text(self.region)}:"
                f"{nag_text(self.account)}:autoScalingGroup:*:autoScalingGroupName/<{ASG_LOGICAL_ID}>]": (
                    "An Auto Scaling group ARN contains a generated id; the group name is pinned."
                ),
            },
        )
        return function
