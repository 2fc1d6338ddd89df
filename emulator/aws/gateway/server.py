"""The emulator's API Gateway: HTTP on 127.0.0.1 → REST v1 proxy event → the real Lambda handler.

Reproduces the behaviour of the deployed REST API (stage ``v1``, one ``/{proxy+}``
resource with ``ANY``, Lambda proxy integration):

* paths outside ``/v1/...`` and the bare stage root have no method: 403
  ``{"message":"Missing Authentication Token"}``;
* a handler that raises or returns something that is not a proxy response: 502
  ``{"message": "Internal server error"}``;
* the integration timeout is 10 s: 504 ``{"message": "Endpoint request timed out"}``;
* request payloads above 10 MiB: 413;
* binary bodies travel base64-encoded both ways;
* optionally (decision D15) requests must carry a SigV4 signature of a test principal.

Process model: the supervisor starts the gateway (``python -m emulator.aws.gateway.server``)
with the API tier's artifact (``--artifact``/``--dependencies``, see
:mod:`emulator.host.artifacts`); the gateway runs the handler in a separate process
(:mod:`emulator.aws.gateway.runtime`) whose ``sys.path`` holds only the package the ``Api``
stack bundles and its dependency set, and which alone receives the Lambda function's
environment, so the API's configuration and credentials never leak into the other
components and a module the package lacks fails at start. Without ``--artifact`` the
handler is imported into the gateway's own process (``--handler``).
With the artifact, the function scales as Lambda does: up to ``--concurrency`` execution
environments (processes, :class:`~emulator.aws.gateway.runtime.ExecutionEnvironments`),
each serving one invocation at a time, because Lambda handlers (Powertools resolvers
included) keep per-invocation state in module globals. Each is started when every other
one is busy and stays warm; its cold start is the ``Init Duration`` of its first
invocation's ``REPORT`` line. Beyond that limit an invocation waits for a free environment
(until the integration timeout: 504); with ``--reserved-concurrency`` it is throttled at
once, and API Gateway answers a throttled Lambda invocation as any invocation Lambda
refuses: 500 ``{"message": "Internal server error"}``. An imported handler (no
``--artifact``) runs one invocation at a time. A timed-out invocation is abandoned, not
killed (as API Gateway abandons a Lambda): the handler's own client timeouts bound it.
Each invocation ends with Lambda's ``REPORT`` line in the gateway's log (duration, billed
duration, memory), plus the CPU time the handler's thread used.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import math
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.aws.gateway.dashboard import API_PREFIX, Dashboard
from emulator.aws.gateway.event import (
    EventContext,
    HttpRequest,
    HttpResponse,
    MalformedResult,
    build_event,
    interpret_result,
    new_request_id,
)
from emulator.aws.gateway.runtime import (
    ExecutionEnvironments,
    FunctionThrottled,
    InvocationUsage,
    LambdaRuntime,
    NoFreeEnvironment,
    RuntimeInitError,
)
from emulator.aws.sigv4 import Principal, SigV4Failure, SigV4Verifier
from emulator.daemon.config import StateLayout
from emulator.faults.hooks import FaultHooks
from emulator.host.artifacts import TierArtifact
from emulator.host.http import DEFAULT_LIMITS, ConnectionLimits, LoopbackServer
from emulator.host.http_handler import LoopbackHandler, RequestError
from vault.infra.artifacts import API

LambdaHandler = Callable[[dict[str, Any], Any], Any]
# Powertools adds a filter to the root handler that drops every record whose logger name contains
# the service name ("api"): no logger of this process may carry "api" in its name.
log = logging.getLogger("emulator.aws.gateway.server")

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
INTEGRATION_TIMEOUT = 10.0
DEFAULT_BINARY_MEDIA_TYPES = ("application/octet-stream", "application/pdf", "application/zip", "image/*")


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 0
    stage: str = "v1"
    integration_timeout: float = INTEGRATION_TIMEOUT
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    region: str = "us-east-1"
    account_id: str = "123456789012"
    api_id: str = "vaultemu01"
    binary_media_types: tuple[str, ...] = DEFAULT_BINARY_MEDIA_TYPES
    #: Non-empty: every request must be SigV4-signed by one of these (decision D15).
    principals: tuple[Principal, ...] = ()
    function_name: str = "nitro-vault-api"
    memory_mb: int = 256
    #: Idle timeout and open-connection cap of the HTTP server.
    limits: ConnectionLimits = DEFAULT_LIMITS


class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    def __init__(self, config: GatewayConfig, request_id: str, deadline: float) -> None:
        self.function_name = config.function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:{config.region}:{config.account_id}:function:{config.function_name}"
        )
        self.memory_limit_in_mb = config.memory_mb
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{config.function_name}"
        self.log_stream_name = "emulator"
        #: ``time.monotonic()`` at which API Gateway stops waiting (the integration timeout).
        self.deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def _gateway_error(status: int, message: str, error_type: str, request_id: str) -> HttpResponse:
    body = json.dumps({"message": message}).encode()
    return HttpResponse(
        status=status,
        headers=[
            ("Content-Type", "application/json"),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-ErrorType", error_type),
        ],
        body=body,
    )


#: The gateway's own answers to requests refused before their body is read, by status.
GATEWAY_ERRORS = {
    400: ("Bad Request", "BadRequestException"),
    411: ("Length Required", "LengthRequiredException"),
    413: ("Request Too Long", "RequestTooLongException"),
    501: ("Not Implemented", "NotImplementedException"),
    503: ("Service Unavailable", "ServiceUnavailableException"),
}
#: The emulator's own liveness route, outside every stage (API Gateway has none): the
#: supervisor's health probe gets 200 here without invoking the handler or logging a refusal.
HEALTH_PATH = "/_emulator/health"
#: The methods a ``{proxy+}`` resource's ``ANY`` method covers.
ANY_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


class ApiGateway:
    """Dispatches HTTP requests to a Lambda handler; :meth:`start` serves them on 127.0.0.1."""

    def __init__(
        self,
        config: GatewayConfig,
        handler: LambdaHandler | ExecutionEnvironments,
        dashboard: Dashboard | None = None,
    ) -> None:
        self.config = config
        self.handler = handler
        #: ``/_emulator/`` (loopback only; see :mod:`emulator.aws.gateway.dashboard`), with a state directory.
        self.dashboard = dashboard
        self._invoke_lock = threading.Lock()
        #: Per-route ("METHOD /stage/path") throttle, latency and failure, answered as API Gateway does.
        self.faults = FaultHooks()
        self._verifier = SigV4Verifier(config.principals, config.region) if config.principals else None
        self._server = LoopbackServer(
            _RequestHandler, self, name="gateway", host=config.host, port=config.port, limits=config.limits
        )

    # -- dispatch (no sockets; the unit tests drive this directly) ----------------

    def dispatch(self, request: HttpRequest) -> HttpResponse:
        request_id = new_request_id()
        if request.raw_path == HEALTH_PATH and request.method in ("GET", "HEAD"):
            return HttpResponse(200, [("Content-Type", "application/json")], b'{"status":"ok"}')
        if self.dashboard is not None and Dashboard.serves(request.raw_path):
            return self.dashboard.handle(request)
        injected = self.faults.before(f"{request.method} {request.raw_path}")
        if injected is not None:
            if injected.kind == "throttle":
                return _gateway_error(429, "Too Many Requests", "TooManyRequestsException", request_id)
            return _gateway_error(
                injected.status, "Internal server error", "InternalServerErrorException", request_id
            )
        if request.method not in ANY_METHODS:
            # API Gateway's ANY covers the seven methods above only: any other method
            # (TRACE, CONNECT, QUERY, unknown ones) never reaches the integration, so it is
            # not passed to the handler. It is refused by the gateway itself, as JSON like its
            # other errors: 405 with the methods ANY accepts in ``Allow``.
            response = _gateway_error(405, "Method Not Allowed", "MethodNotAllowedException", request_id)
            response.headers.append(("Allow", ", ".join(ANY_METHODS)))
            return response
        prefix = f"/{self.config.stage}/"
        if not request.raw_path.startswith(prefix) or request.raw_path == prefix:
            return _gateway_error(
                403, "Missing Authentication Token", "MissingAuthenticationTokenException", request_id
            )
        if len(request.body) > self.config.max_payload_bytes:
            return _gateway_error(413, "Request Too Long", "RequestTooLongException", request_id)
        identity: dict[str, str | None] = {}
        if self._verifier is not None:
            outcome = self._verifier.verify(
                request.method, request.raw_path, request.raw_query, request.headers, request.body
            )
            if isinstance(outcome, SigV4Failure):
                error_type = (
                    "MissingAuthenticationTokenException"
                    if outcome.message == "Missing Authentication Token"
                    else "IncompleteSignatureException"
                    if "requires" in outcome.message
                    else "InvalidSignatureException"
                )
                return _gateway_error(outcome.status, outcome.message, error_type, request_id)
            identity = {
                "accessKey": outcome.access_key_id,
                "accountId": outcome.account_id,
                "caller": outcome.arn.split("/", 1)[-1],
                "user": outcome.arn.split("/", 1)[-1],
                "userArn": outcome.arn,
            }
        stage_path = request.raw_path[len(prefix) - 1 :]
        host = next((v for k, v in request.headers if k.lower() == "host"), "localhost")
        context = EventContext(
            stage=self.config.stage,
            account_id=self.config.account_id,
            api_id=self.config.api_id,
            domain_name=host,
            binary_media_types=self.config.binary_media_types,
            identity=identity,
        )
        event = build_event(request, stage_path, context, request_id)
        response = self._invoke(event, request_id)
        headers = [(k, v) for k, v in response.headers]
        names = {k.lower() for k, _ in headers}
        if "content-type" not in names:
            headers.append(("Content-Type", "application/json"))
        headers.append(("x-amzn-RequestId", request_id))
        headers.append(("x-amz-apigw-id", request_id[:16]))
        return HttpResponse(response.status, headers, response.body)

    def _report(
        self,
        request_id: str,
        seconds: float,
        cpu_seconds: float,
        max_memory_mb: int | None = None,
        init_seconds: float | None = None,
    ) -> None:
        """Lambda's REPORT line for one invocation, and the CPU time the handler's thread used.

        ``Init Duration`` (an environment's cold start) is on its first invocation's line only.
        """
        duration_ms = seconds * 1000
        if max_memory_mb is None:
            max_memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        init = "" if init_seconds is None else f"Init Duration: {init_seconds * 1000:.2f} ms\t"
        log.info(
            "REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: %d MB\t"
            "Max Memory Used: %d MB\t%sCPU Time: %.2f ms",
            request_id,
            duration_ms,
            math.ceil(duration_ms),
            self.config.memory_mb,
            max_memory_mb,
            init,
            cpu_seconds * 1000,
        )

    def _report_usage(self, request_id: str, usage: InvocationUsage) -> None:
        # Measured in the function's process, where the handler ran.
        self._report(request_id, usage.seconds, usage.cpu_seconds, usage.max_memory_mb, usage.init_seconds)

    def _run_in_environment(
        self, environments: ExecutionEnvironments, event: dict[str, Any], context: LambdaContext
    ) -> dict[str, Any]:
        """One invocation in a free execution environment: ``result``, ``error`` or ``throttled``."""
        try:
            invocation = environments.invoke(event, context, context.deadline)
        except FunctionThrottled as exc:
            return {"throttled": exc}
        except NoFreeEnvironment:
            return {"timeout": True}
        if invocation.usage is not None:
            self._report_usage(context.aws_request_id, invocation.usage)
        if invocation.error is not None:
            return {"error": invocation.error}
        return {"result": invocation.result}

    def _invoke(self, event: dict[str, Any], request_id: str) -> HttpResponse:
        deadline = time.monotonic() + self.config.integration_timeout
        outcome: dict[str, Any] = {}

        def run() -> None:
            if isinstance(self.handler, ExecutionEnvironments):
                context = LambdaContext(self.config, request_id, deadline)
                outcome.update(self._run_in_environment(self.handler, event, context))
                return
            with self._invoke_lock:
                context = LambdaContext(self.config, request_id, deadline)
                began, cpu = time.perf_counter(), time.thread_time()
                try:
                    outcome["result"] = self.handler(event, context)
                except BaseException as exc:  # noqa: BLE001 - a Lambda that raises, whatever it raises
                    outcome["error"] = exc
                finally:
                    usage = self.handler.last_usage if isinstance(self.handler, LambdaRuntime) else None
                    if usage is not None:
                        self._report_usage(request_id, usage)
                    else:
                        self._report(request_id, time.perf_counter() - began, time.thread_time() - cpu)

        worker = threading.Thread(target=run, name=f"invoke-{request_id[:8]}", daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        if "throttled" in outcome:
            # Lambda's 429 for the function; API Gateway turns every refused invocation into a 500.
            log.error(
                "Lambda invocation failed with status: 429 (TooManyRequestsException: %s) (request %s)",
                FunctionThrottled.reason,
                request_id,
            )
            return _gateway_error(500, "Internal server error", "InternalServerErrorException", request_id)
        if worker.is_alive() or "timeout" in outcome:
            log.warning(
                "integration timed out after %.1f s (request %s)", self.config.integration_timeout, request_id
            )
            return _gateway_error(504, "Endpoint request timed out", "IntegrationTimeout", request_id)
        if "error" in outcome:
            error = outcome["error"]
            log.error("handler raised %s (request %s)", type(error).__name__, request_id)
            return _gateway_error(502, "Internal server error", "InternalServerErrorException", request_id)
        try:
            return interpret_result(outcome.get("result"))
        except MalformedResult as exc:
            log.error("malformed Lambda proxy response: %s (request %s)", exc, request_id)
            return _gateway_error(502, "Internal server error", "InternalServerErrorException", request_id)

    # -- HTTP server ---------------------------------------------------------------

    def start(self) -> None:
        self._server.start()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return f"{self._server.url}/{self.config.stage}"

    def stop(self) -> None:
        self._server.stop()


class _RequestHandler(LoopbackHandler):
    owner: ApiGateway
    server_version = "vault-emulator-apigw"
    sys_version = ""

    def body_limit(self) -> int:
        return self.owner.config.max_payload_bytes

    @classmethod
    def error_reply(cls, error: RequestError) -> tuple[list[tuple[str, str]], bytes]:
        message, error_type = GATEWAY_ERRORS.get(error.status, ("Bad Request", "BadRequestException"))
        response = _gateway_error(error.status, message, error_type, new_request_id())
        return response.headers, response.body

    def _handle(self) -> None:
        body = self.read_body()
        if body is None:
            return
        target = self.path
        if "://" in target:  # absolute-form request target
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        raw_path, _, raw_query = target.partition("?")
        request = HttpRequest(
            method=self.command,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
        )
        response = self.owner.dispatch(request)
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def __getattr__(self, name: str) -> Callable[[], None]:
        # http.server answers a method without a ``do_`` handler with an HTML 501 page;
        # every method goes to dispatch, which refuses those ANY does not cover.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        # Health probes arrive every few seconds; at INFO they would bury the real requests.
        # The dashboard's page polls its JSON endpoints every few seconds: DEBUG too.
        path = self.path.partition("?")[0]
        probe = path == HEALTH_PATH or (self.command == "GET" and path.startswith(API_PREFIX))
        log.log(logging.DEBUG if probe else logging.INFO, "%s %s", self.address_string(), format % args)


# -- process entry point ---------------------------------------------------------


def load_handler(spec: str) -> LambdaHandler:
    """``package.module:function`` → the function."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"handler must look like package.module:function, not {spec!r}")
    handler = getattr(importlib.import_module(module_name), attribute)
    if not callable(handler):
        raise TypeError(f"{spec} is not callable")
    return handler  # type: ignore[no-any-return]


def load_principals(path: Path) -> tuple[Principal, ...]:
    entries = json.loads(path.read_text(encoding="utf-8"))
    return tuple(Principal(e["access_key_id"], e["secret_access_key"], e["arn"]) for e in entries)


def write_ready_file(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m emulator.aws.gateway.server", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--handler",
        default=API.entry_point.console_script,
        help="without --artifact: the handler to import into this process",
    )
    parser.add_argument("--artifact", type=Path, help="the API tier's artifact directory")
    parser.add_argument("--dependencies", type=Path, help="the API tier's dependency set (with --artifact)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stage", default="v1")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    parser.add_argument("--account-id", default="123456789012")
    parser.add_argument("--timeout", type=float, default=INTEGRATION_TIMEOUT, help="integration timeout (s)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=os.cpu_count() or 1,
        help="with --artifact: execution environments (processes) at most; default the number of cores",
    )
    parser.add_argument(
        "--reserved-concurrency",
        type=int,
        help="the function's reserved concurrency (at most --concurrency); beyond it, throttled",
    )
    parser.add_argument("--principals", type=Path, help="JSON list of SigV4 test principals; enables SigV4")
    parser.add_argument("--ready-file", type=Path, help="written with the bound port once serving")
    parser.add_argument(
        "--state-dir", type=Path, help="the emulator's state directory: serves the dashboard at /_emulator/"
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        help="wait for this JSON file, add it to the environment and delete it before serving",
    )
    parser.add_argument("--env-timeout", type=float, default=300.0, help="seconds to wait for --env-file")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if args.reserved_concurrency is not None and not 1 <= args.reserved_concurrency <= args.concurrency:
        parser.error(f"--reserved-concurrency must be within 1..{args.concurrency} (--concurrency)")
    return args


def await_environment(path: Path, timeout: float, stop: threading.Event) -> dict[str, str] | None:
    """Wait for the Lambda environment in ``path``; return it and remove the file.

    Lets the supervisor start this process (and pay the handler's cold start) before
    the values the environment holds, such as the KMS key ARN, exist.
    """
    deadline = time.monotonic() + timeout
    while not path.exists():
        if stop.wait(0.01) or time.monotonic() > deadline:
            return None
    values = json.loads(path.read_text(encoding="utf-8"))
    path.unlink()
    return {str(k): str(v) for k, v in values.items()}


def start_handler(args: argparse.Namespace) -> LambdaHandler | ExecutionEnvironments:
    """The handler: in its own process from the API artifact, or imported here without one."""
    if args.artifact is None:
        return load_handler(args.handler)
    if args.dependencies is None:
        raise ValueError("--artifact needs --dependencies")
    artifact = TierArtifact(API, args.artifact, args.dependencies)
    command, base_environment = artifact.command(), dict(os.environ)

    def environment() -> LambdaRuntime:
        # Each process starts with this (credential-free) environment; its own arrives later.
        return LambdaRuntime(command, base_environment)

    environments = ExecutionEnvironments(
        environment, concurrency=args.concurrency, reserved=args.reserved_concurrency
    )
    environments.start()
    return environments


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    # The Lambda "cold start" happens here, before the gateway reports ready.
    try:
        handler = start_handler(args)
    except RuntimeInitError as exc:
        log.error("the API function cannot start: %s", exc)
        if args.ready_file is not None:
            write_ready_file(args.ready_file, {"error": str(exc)})
        return 1
    config = GatewayConfig(
        port=args.port,
        stage=args.stage,
        region=args.region,
        account_id=args.account_id,
        integration_timeout=args.timeout,
        principals=load_principals(args.principals) if args.principals else (),
    )
    dashboard = Dashboard(StateLayout(args.state_dir)) if args.state_dir is not None else None
    gateway = ApiGateway(config, handler, dashboard)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if args.env_file is not None:
            environment = await_environment(args.env_file, args.env_timeout, stop)
            if environment is None:
                log.error("no environment arrived in %s", args.env_file)
                return 1
            if isinstance(handler, ExecutionEnvironments):
                handler.configure(environment)
            else:
                os.environ.update(environment)
        return serve(gateway, args, stop)
    finally:
        if isinstance(handler, ExecutionEnvironments):
            handler.stop()


def serve(gateway: ApiGateway, args: argparse.Namespace, stop: threading.Event) -> int:
    config = gateway.config
    gateway.start()
    log.info(
        "serving %s (handler %s, SigV4 %s)", gateway.url, args.handler, "on" if config.principals else "off"
    )
    if args.ready_file is not None:
        write_ready_file(args.ready_file, {"port": gateway.port, "pid": os.getpid(), "url": gateway.url})
    try:
        while not stop.wait(0.5):
            pass
    finally:
        gateway.stop()
        if args.ready_file is not None:
            with contextlib.suppress(FileNotFoundError):
                args.ready_file.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
