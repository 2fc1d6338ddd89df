"""API tier: the vault table, the API function and the REST API in front of it (spec 7.5, 1.10).

Differences from upstream, each a decision: the REST API requires IAM (SigV4) on every
method (D15); the stage has throttling, access logs and execution-error logs; the
function gets ``AUDIT_RETENTION_DAYS`` (D14) and logs at INFO, not DEBUG (D9); the
function signs each decrypt's authorization with an asymmetric key of this stack whose
key policy lets only the API's role sign (D16).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from vault.api.reveal_policy import POLICY_ENV
from vault.infra import table as table_def
from vault.infra.artifacts import API
from vault.infra.authorizer_key import (
    DESCRIPTION as AUTHORIZER_KEY_DESCRIPTION,
)
from vault.infra.authorizer_key import (
    AuthorizerKeyParams,
    build_authorizer_key_policy,
)

from .config import VaultConfig
from .guardrails import acknowledge, cfn_resource, managed_policy_finding, nag_text, skip_checkov
from .naming import Names
from .network_stack import HTTPS, NetworkStack
from .packaging import RUNTIME, api_code, dependency_layer_code
from .perimeter import confused_deputy, identity_perimeter, network_perimeter

STAGE = "v1"
#: Lambda's own ENI management must work; the function's code must not be able to do it.
ENI_ACTIONS = [
    "ec2:AssignPrivateIpAddresses",
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:UnassignPrivateIpAddresses",
]
#: Spec 1.6: every write goes through one TransactWriteItems call.
TRANSACTION_ACTIONS = [
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
]


class ApiStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: VaultConfig,
        network: NetworkStack,
        key_arn: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        names = Names(config)
        vpc_id = network.vpc.vpc_id
        function_arn = (
            f"arn:{config.partition}:lambda:{self.region}:{config.account}:function:{names.api_function_name}"
        )

        self.table = dynamodb.TableV2(
            self,
            "Table",
            partition_key=dynamodb.Attribute(
                name=table_def.PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            sort_key=dynamodb.Attribute(name=table_def.SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            table_class=dynamodb.TableClass.STANDARD,
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            dynamo_stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
            time_to_live_attribute=table_def.TTL_ATTRIBUTE,
            # Blind-index tokens of the searchable fields: keys only, so an index holds no value.
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=index["IndexName"],
                    partition_key=dynamodb.Attribute(
                        name=index["KeySchema"][0]["AttributeName"], type=dynamodb.AttributeType.STRING
                    ),
                    projection_type=dynamodb.ProjectionType.KEYS_ONLY,
                )
                for index in table_def.global_secondary_indexes()
            ],
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # The table holds every vault: deleting the stack must not delete the data.
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
            resource_policy=iam.PolicyDocument.from_json(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        identity_perimeter("dynamodb:*", config.account),
                        confused_deputy("dynamodb:*", config.account),
                        network_perimeter("dynamodb:*", config.account, vpc_id, config.partition),
                    ],
                }
            ),
        )

        self.authorizer_key = self._authorizer_key(config, names)
        self.function, self.alias = self._function(config, names, network, key_arn, function_arn)
        self.api = self._rest_api(config, self.alias, network.log_key)

        CfnOutput(self, "FunctionArn", value=self.function.function_arn)
        CfnOutput(self, "RoleArn", value=names.api_role_arn)
        CfnOutput(self, "AuthorizerKeyArn", value=self.authorizer_key.key_arn)
        CfnOutput(self, "TableName", value=self.table.table_name)
        CfnOutput(self, "ApiUrl", value=self.api.url)

    def _authorizer_key(self, config: VaultConfig, names: Names) -> kms.Key:
        """The key whose signature the enclave requires on every decrypt (D16)."""
        policy = build_authorizer_key_policy(
            AuthorizerKeyParams(
                account_id=config.account, api_role_arn=names.api_role_arn, partition=config.partition
            )
        )
        key = kms.Key(
            self,
            "AuthorizerKey",
            description=AUTHORIZER_KEY_DESCRIPTION,
            key_spec=kms.KeySpec.ECC_NIST_P256,
            key_usage=kms.KeyUsage.SIGN_VERIFY,
            policy=iam.PolicyDocument.from_json(policy),
            # Vaults are bound to this key's public key: a new key cannot open them.
            removal_policy=RemovalPolicy.RETAIN,
        )
        skip_checkov(
            key,
            {"CKV_AWS_7": "KMS does not rotate asymmetric keys; vaults are bound to this key's public key."},
        )
        acknowledge(
            key,
            {
                "AwsSolutions-KMS5": (
                    "KMS does not rotate asymmetric keys; vaults are bound to this key's public key."
                ),
            },
        )
        return key

    def _function(
        self, config: VaultConfig, names: Names, network: NetworkStack, key_arn: str, function_arn: str
    ) -> tuple[lambda_.Function, lambda_.Alias]:
        role = iam.Role.from_role_arn(self, "ApiRole", names.api_role_arn)
        group = ec2.SecurityGroup(
            self,
            "FunctionSecurityGroup",
            vpc=network.vpc,
            description="API function: HTTPS to DynamoDB and inside the VPC only",
            allow_all_outbound=False,
        )
        group.add_egress_rule(
            ec2.Peer.prefix_list(network.dynamodb_prefix_list_id), ec2.Port.tcp(HTTPS), "DynamoDB"
        )
        group.add_egress_rule(
            ec2.Peer.ipv4(network.vpc_cidr), ec2.Port.tcp(HTTPS), "KMS endpoint and the decryption tier's NLB"
        )
        log_group = logs.LogGroup(
            self,
            "FunctionLogs",
            log_group_name=f"/aws/lambda/{names.api_function_name}",
            retention=logs.RetentionDays.THREE_DAYS,
            removal_policy=RemovalPolicy.DESTROY,
            encryption_key=network.log_key,
        )
        layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            code=dependency_layer_code(config.lambda_dependencies),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[lambda_.Architecture.ARM_64],
            description="Third-party libraries of the vault API",
        )
        function = lambda_.Function(
            self,
            "Function",
            function_name=names.api_function_name,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=API.entry_point.reference,
            code=api_code(),
            layers=[layer],
            memory_size=1024,
            timeout=Duration.seconds(10),
            tracing=lambda_.Tracing.ACTIVE,
            role=role,
            vpc=network.vpc,
            vpc_subnets=network.api_subnets,
            security_groups=[group],
            log_group=log_group,
            environment=self._environment(config, key_arn),
        )
        # API Gateway invokes the published version behind this alias, never $LATEST.
        alias = lambda_.Alias(self, "Live", alias_name="live", version=function.current_version)

        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadVaults",
                # BatchGetItem: POST /vaults/decrypt reads every vault of a batch in one call.
                actions=["dynamodb:GetItem", "dynamodb:BatchGetItem"],
                resources=[self.table.table_arn],
            )
        )
        # GET /vaults/{id}/audit queries the vault's log partition; Query on the table is held
        # to log partitions, so it cannot page through vault items.
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadAuditLogs",
                actions=["dynamodb:Query"],
                resources=[self.table.table_arn],
                conditions={
                    "ForAllValues:StringLike": {
                        "dynamodb:LeadingKeys": [f"{table_def.LOG_PREFIX}{table_def.KEY_SEPARATOR}*"]
                    }
                },
            )
        )
        # Search: Query on the token indexes only (their items are keys and a token).
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="SearchTokenIndexes",
                actions=["dynamodb:Query"],
                resources=[
                    f"{self.table.table_arn}/index/{table_def.index_name(name)}"
                    for name in table_def.INDEXED_FIELDS
                ],
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="WriteOnlyInTransactions",
                actions=TRANSACTION_ACTIONS,
                resources=[self.table.table_arn],
                conditions={"StringEquals": {"dynamodb:EnclosingOperation": "TransactWriteItems"}},
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="Logs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn, f"{log_group.log_group_arn}:*"],
            )
        )
        # The Describe actions have no resource-level permissions; the others are held to
        # this account and region (the form Lambda documents for DeleteNetworkInterface).
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="VpcNetworkingDescribe",
                actions=[a for a in ENI_ACTIONS if a.startswith("ec2:Describe")],
                resources=["*"],
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="VpcNetworking",
                actions=[a for a in ENI_ACTIONS if not a.startswith("ec2:Describe")],
                resources=[f"arn:{config.partition}:ec2:{self.region}:{config.account}:*/*"],
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="NoNetworkingFromFunctionCode",
                effect=iam.Effect.DENY,
                actions=[a for a in ENI_ACTIONS if not a.startswith("ec2:Describe")],
                resources=["*"],
                conditions={"ArnEquals": {"lambda:SourceFunctionArn": function_arn}},
            )
        )
        # The statements above land in a policy under the imported role.
        acknowledge(
            role,
            {
                "AwsSolutions-IAM5[Resource::*]": (
                    "Lambda's ENI Describe actions and X-Ray have no resource-level permissions; "
                    "the function's own code is denied the ENI actions by lambda:SourceFunctionArn."
                ),
                f"AwsSolutions-IAM5[Resource::arn:{config.partition}:ec2:{nag_text(self.region)}:"
                f"{config.account}:*/*]": (
                    "Lambda's ENIs get ids chosen by the service; the actions are held to this account "
                    "and region, and the function's own code is denied them by lambda:SourceFunctionArn."
                ),
                f"AwsSolutions-IAM5[Resource::<{self.get_logical_id(cfn_resource(log_group))}.Arn>:*]": (
                    "Log streams of the function's own log group."
                ),
            },
        )
        acknowledge(
            function,
            {
                "AwsSolutions-L1": (
                    "python3.13 is the runtime the dependency layer is built for (vault_cdk.build "
                    "lambda-deps); moving runtimes means rebuilding the layer and is a deliberate upgrade."
                ),
            },
        )
        return function, alias

    def _environment(self, config: VaultConfig, key_arn: str) -> dict[str, str]:
        """Spec 1.10, at INFO instead of DEBUG (decision D9), plus the audit retention (D14)."""
        environment = {
            "TABLE_NAME": self.table.table_name,
            "KEY_ARN": key_arn,
            "AUTHORIZER_KEY_ARN": self.authorizer_key.key_arn,
            # Searchable fields get blind-index tokens from the enclave (POST /vaults/search).
            "SEARCH_INDEX": "on",
            "VAULT_URL": f"https://{config.domain_name}",
            "AWS_ACCOUNT_ID": config.account,
            "AWS_STS_REGIONAL_ENDPOINTS": "regional",
            "LOG_LEVEL": config.log_level,
            "POWERTOOLS_LOGGER_SAMPLE_RATE": "0.1",
            "POWERTOOLS_METRICS_NAMESPACE": "NitroVault",
            "POWERTOOLS_SERVICE_NAME": "api",
            "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
        }
        # Unset means audit items never expire; a number of days makes them carry expire_at.
        if config.audit_retention_days > 0:
            environment["AUDIT_RETENTION_DAYS"] = str(config.audit_retention_days)
        # Without a policy the API lets every caller decrypt everything (and says so at start).
        if config.reveal_policy is not None:
            environment[POLICY_ENV] = config.reveal_policy
        return environment

    def _rest_api(self, config: VaultConfig, alias: lambda_.Alias, log_key: kms.IKey) -> apigw.RestApi:
        statements = [
            # With IAM authorization, granting the account lets its IAM policies decide who calls.
            iam.PolicyStatement(
                sid="AccountPrincipals",
                principals=[iam.AccountRootPrincipal()],
                actions=["execute-api:Invoke"],
                resources=["execute-api:/*"],
            ),
            iam.PolicyStatement(
                sid="IdentityPerimeter",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["execute-api:Invoke"],
                resources=["execute-api:/*"],
                conditions={"StringNotEquals": {"aws:PrincipalAccount": config.account}},
            ),
        ]
        endpoint_types = [apigw.EndpointType.REGIONAL]
        vpc_endpoints: list[ec2.IVpcEndpoint] = []
        if config.api_vpc_endpoint_id is not None:
            endpoint_types = [apigw.EndpointType.PRIVATE]
            vpc_endpoints = [
                ec2.InterfaceVpcEndpoint.from_interface_vpc_endpoint_attributes(
                    self, "ApiVpcEndpoint", vpc_endpoint_id=config.api_vpc_endpoint_id, port=HTTPS
                )
            ]
            statements.append(
                iam.PolicyStatement(
                    sid="OnlyThroughVpcEndpoint",
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=["execute-api:Invoke"],
                    resources=["execute-api:/*"],
                    conditions={"StringNotEquals": {"aws:SourceVpce": config.api_vpc_endpoint_id}},
                )
            )
        access_logs = logs.LogGroup(
            self,
            "ApiAccessLogs",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.RETAIN,
            encryption_key=log_key,
        )
        api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"{config.prefix}-api",
            description="nitro-vault API (IAM authorization)",
            endpoint_configuration=apigw.EndpointConfiguration(
                types=endpoint_types, vpc_endpoints=vpc_endpoints
            ),
            policy=iam.PolicyDocument(statements=statements),
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE,
                tracing_enabled=True,
                throttling_rate_limit=config.api_rate_limit,
                throttling_burst_limit=config.api_burst_limit,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                # Request and response bodies carry PII: never log them (decision D9).
                data_trace_enabled=False,
                metrics_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
        )
        # Only {proxy+}: every route of the API lives below the root, which stays without methods.
        api.root.add_resource("{proxy+}").add_method(
            "ANY",
            apigw.LambdaIntegration(alias, proxy=True, timeout=Duration.seconds(10), allow_test_invoke=False),
            authorization_type=apigw.AuthorizationType.IAM,
        )
        acknowledge(
            api,
            {
                "AwsSolutions-APIG2": (
                    "Lambda proxy integration: the function validates every request body against its "
                    "models and answers 4xx with a stable error code."
                ),
                "AwsSolutions-APIG3": (
                    "Every method requires SigV4 from an IAM principal of this account, and the stage is "
                    "throttled; a WAF web ACL can be attached at deployment without changing the stack."
                ),
                "AwsSolutions-COG4": "Decision D15: the API authorizes with IAM (SigV4), not Cognito.",
                managed_policy_finding("service-role/AmazonAPIGatewayPushToCloudWatchLogs"): (
                    "The AWS-managed policy API Gateway needs to write the stage's access and error logs."
                ),
            },
        )
        return api
