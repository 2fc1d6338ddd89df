"""The vault's REST API: the Lambda behind API Gateway (REST API, proxy integration).

``vault.api.handler.lambda_handler`` is the entry point. Modules, one concept each:
``config`` (environment), ``app`` (resolver, errors, Swagger), ``routes``, ``models``,
``service`` (what each route does), ``store`` (DynamoDB), ``audit``, ``crypto`` (HPKE
sealing), ``kms`` (key pairs), ``parent`` (decrypt client), ``ids``, ``headers``,
``errors``, ``clients`` (boto3), ``dependencies`` and ``observability``.
"""
