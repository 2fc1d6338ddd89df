"""Identity canaries: prove every minute that no one outside an enclave can decrypt (spec 7.6).

Two copies of one function, one inside the vault VPC and one outside, each holding an
IAM grant for ``kms:Decrypt`` on the vault key that the key policy deliberately ignores.
Each tries a DryRun decrypt of a real vault key; an alarm fires if one would succeed or
if a canary stops reporting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from vault.infra.key_policy import ENCRYPTION_CONTEXT_KEY

from .config import VaultConfig
from .guardrails import acknowledge, managed_policy_finding
from .network_stack import HTTPS, NetworkStack
from .packaging import ASSET_EXCLUDES
from .perimeter import identity_perimeter

CANARY_CODE = Path(__file__).resolve().parent / "functions" / "canary"
NAMESPACE = "NitroVault"


class CanaryStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: VaultConfig,
        network: NetworkStack,
        key_arn: str,
        table: dynamodb.ITableV2,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        topic = self._topic(config)

        group = ec2.SecurityGroup(
            self,
            "CanarySecurityGroup",
            vpc=network.vpc,
            description="In-VPC canary: HTTPS to DynamoDB and the KMS endpoint only",
            allow_all_outbound=False,
        )
        group.add_egress_rule(
            ec2.Peer.prefix_list(network.dynamodb_prefix_list_id), ec2.Port.tcp(HTTPS), "DynamoDB"
        )
        group.add_egress_rule(ec2.Peer.ipv4(network.vpc_cidr), ec2.Port.tcp(HTTPS), "KMS endpoint")

        canaries = {
            "canary_vpc": self._canary(
                "CanaryVpc", "canary_vpc", key_arn, table, network.log_key, network, group
            ),
            "canary_no_vpc": self._canary(
                "CanaryNoVpc", "canary_no_vpc", key_arn, table, network.log_key, None, None
            ),
        }

        schedule_role = iam.Role(
            self,
            "ScheduleRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": self.account}}
            ),
            description="EventBridge Scheduler invoking the identity canaries",
        )
        alarms: list[cloudwatch.Alarm] = []
        for service, function in canaries.items():
            schedule_role.add_to_policy(
                iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[function.function_arn])
            )
            scheduler.CfnSchedule(
                self,
                f"{function.node.id}Schedule",
                schedule_expression="rate(1 minute)",
                flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
                target=scheduler.CfnSchedule.TargetProperty(
                    arn=function.function_arn, role_arn=schedule_role.role_arn
                ),
            )
            alarm = cloudwatch.Alarm(
                self,
                f"{function.node.id}DecryptAlarm",
                alarm_description=(
                    f"{service}: a principal outside an attested enclave could decrypt a vault key, "
                    "or the canary stopped reporting"
                ),
                metric=cloudwatch.Metric(
                    namespace=NAMESPACE,
                    metric_name="DecryptSuccess",
                    dimensions_map={"service": service},
                    statistic="Maximum",
                    period=Duration.minutes(1),
                ),
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                datapoints_to_alarm=1,
                treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
            )
            action = cw_actions.SnsAction(topic)
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            alarm.add_insufficient_data_action(action)
            alarms.append(alarm)

        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsOnly",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={"ArnEquals": {"aws:SourceArn": [alarm.alarm_arn for alarm in alarms]}},
            )
        )
        CfnOutput(self, "AlarmTopicArn", value=topic.topic_arn)

    def _topic(self, config: VaultConfig) -> sns.Topic:
        # CloudWatch can publish to an encrypted topic only with a customer managed key.
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="nitro-vault canary alarm topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            )
        )
        topic = sns.Topic(self, "AlarmTopic", master_key=key, enforce_ssl=True)
        topic.add_to_resource_policy(
            iam.PolicyStatement.from_json(identity_perimeter("sns:*", config.account, topic.topic_arn))
        )
        if config.alarm_email is not None:
            topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        return topic

    def _canary(
        self,
        construct_id: str,
        service: str,
        key_arn: str,
        table: dynamodb.ITableV2,
        log_key: kms.IKey,
        network: NetworkStack | None,
        group: ec2.SecurityGroup | None,
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
            encryption_key=log_key,
        )
        function = lambda_.Function(
            self,
            construct_id,
            runtime=lambda_.Runtime.PYTHON_3_14,
            architecture=lambda_.Architecture.ARM_64,
            handler="index.handler",
            code=lambda_.Code.from_asset(str(CANARY_CODE), exclude=ASSET_EXCLUDES),
            memory_size=128,
            timeout=Duration.seconds(5),
            reserved_concurrent_executions=1,
            log_group=log_group,
            vpc=network.vpc if network is not None else None,
            vpc_subnets=network.api_subnets if network is not None else None,
            security_groups=[group] if group is not None else None,
            environment={
                "TABLE_NAME": table.table_name,
                "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
                "POWERTOOLS_SERVICE_NAME": service,
                "ENCRYPTION_CONTEXT_KEY": ENCRYPTION_CONTEXT_KEY,
            },
        )
        # The point of the canary: an IAM grant for Decrypt that the key policy must ignore.
        function.add_to_role_policy(iam.PolicyStatement(actions=["kms:Decrypt"], resources=[key_arn]))
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["dynamodb:Scan"], resources=[table.table_arn])
        )
        findings = {
            managed_policy_finding("service-role/AWSLambdaBasicExecutionRole"): (
                "Logging permissions of a canary that only reads one table and tries one decrypt."
            ),
        }
        if network is not None:
            findings[managed_policy_finding("service-role/AWSLambdaVPCAccessExecutionRole")] = (
                "ENI management of the in-VPC canary; the managed policy is what Lambda documents for it."
            )
        acknowledge(function, findings)
        return function
