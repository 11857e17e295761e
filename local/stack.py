"""The offline stack: the real Lambda handlers, wired the way template.yaml wires them, on emulated AWS.

- moto's HTTP server on 127.0.0.1 holds the template's buckets, table, queues, secrets and bus (local.template),
  with each DynamoDB request applied atomically as in real DynamoDB (local.atomic_dynamodb);
- the input bucket sends its events to EventBridge, where the SubmitFunction's rule (the template's pattern,
  suffixes in any case) targets an SQS queue (moto cannot call Lambda); a dispatcher hands each matched event to
  the function, retries twice like Lambda's async invocation, then writes the failure to the on-failure queue;
- each SQS event source of the template (copy queue, admission queue) is polled into its function;
- a webhook gateway turns HTTP requests on the template's HttpApi routes into API Gateway v2 events;
- the reconciler runs on a short local interval instead of its production schedule;
- the provider is the local MusicGPT-compatible server with a real denoiser (local.provider).

Handlers get exactly the environment variables the template declares, resolved against the emulated resources;
only the API Gateway URL (which has no emulation) is replaced by the gateway's address, and the provider's URL by
the local provider's plain-http address (the template accepts https only). Each function handles one event at a
time, like a single Lambda execution environment: its handlers share one process here, and Powertools keeps each
invocation's state in module globals (the HTTP resolver's current event, the logger's keys, the metrics buffer),
which Lambda never shares between concurrent invocations. Run side by side as threads, a callback was answered
with another callback's body (409s in a burst). Real concurrency needs one process per execution environment.
The admission queue's wake-ups are taken as they come (the template gives it no batching window either).
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import requests
from moto.server import ThreadedMotoServer

from .atomic_dynamodb import serialise_dynamodb_requests
from .events import http_api_event, scheduled_event, sqs_event
from .provider.config import Behaviour, FlakyStep
from .provider.server import LocalMusicGPT, ProviderConfig
from .template import REGION, StackResources, Template

Handler = Callable[[dict[str, Any], Any], Any]
FUNCTIONS = ("SubmitFunction", "WebhookFunction", "ReconcileFunction")
INPUT_EVENTS_QUEUE = "local-input-notifications"
_running_function = threading.local()  # which function (if any) this thread is executing
ASYNC_ATTEMPTS = 3  # Lambda async invocation: the first try + MaximumRetryAttempts (2)


def running_function() -> str | None:
    """The function whose handler the calling thread is running, if any."""
    return getattr(_running_function, "name", None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalStackConfig:
    stack_name: str = "denoise-local"
    api_key: str = "local-musicgpt-key"
    max_parallel_jobs: int = 2
    provider_max_parallel: int | None = None
    """The provider's own parallel limit (429 beyond it); defaults to max_parallel_jobs."""
    provider_retry_after: int | None = None
    provider_min_job_seconds: float = 0.0
    deliver_webhooks: bool = True
    attenuation_limit_db: float = 100.0
    reconcile_interval: float = 10.0
    retry_delay: float = 1.0
    """Seconds before a failed SQS message or async event is retried (Lambda waits minutes; locally, seconds)."""
    moto_port: int = 0
    gateway_port: int = 0
    provider_port: int = 0
    state_dir: Path = Path(".local-stack")
    parameters: dict[str, str] = field(default_factory=dict)
    """Extra template parameter overrides."""
    event_sources: bool = True
    """False = nothing feeds the functions on its own (benchmarks invoke them directly)."""
    provider_workers: int | None = None
    provider_behaviours: frozenset[Behaviour] | None = None
    """How the local provider behaves (progress callbacks, https outputs, a flaky API...): local.provider.config;
    None = LOCAL_MUSICGPT_BEHAVIOURS, else documented."""
    provider_flaky_script: tuple[FlakyStep, ...] | None = None


class _FunctionRunner:
    """One function: its handler, loaded from the template's Handler, called one event at a time (see the module's
    docstring for why); a caller waits its turn, as a throttled event would."""

    def __init__(self, name: str, handler_path: str) -> None:
        module_name, _, attribute = handler_path.rpartition(".")
        self.name = name
        self._handler: Handler = getattr(importlib.import_module(module_name), attribute)
        self._lock = threading.Lock()
        self.invocations = 0
        self.errors = 0

    def __call__(self, event: dict[str, Any]) -> Any:
        with self._lock:
            self.invocations += 1
            _running_function.name = self.name
            try:
                return self._handler(event, _Context(self.name))
            except Exception:
                self.errors += 1
                raise
            finally:
                _running_function.name = None


class _GatewayServer(ThreadingHTTPServer):
    request_queue_size = 128
    """The provider's callbacks arrive together: socketserver's backlog of 5 would drop some connections."""


class _HandlerOutput:
    """stdout for the whole process: what a function's thread prints goes to the log, the rest to the terminal."""

    def __init__(self, terminal: Any, log: Any) -> None:
        self._terminal = terminal
        self._log = log

    def _target(self) -> Any:
        return self._log if getattr(_running_function, "name", None) else self._terminal

    def write(self, text: str) -> int:
        return int(self._target().write(text))

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._terminal, name)


class _Context:
    memory_limit_in_mb = 512
    aws_request_id = "local"

    def __init__(self, name: str) -> None:
        self.function_name = name
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:{name}"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 900_000


class LocalStack:
    def __init__(self, config: LocalStackConfig | None = None) -> None:
        self.config = config or LocalStackConfig()
        self.template = Template.load()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._moto: ThreadedMotoServer | None = None
        self._gateway: ThreadingHTTPServer | None = None
        self.provider: LocalMusicGPT | None = None
        self.resources: StackResources | None = None
        self.functions: dict[str, _FunctionRunner] = {}
        self.moto_url = ""
        self.gateway_url = ""
        self.failures: Counter[str] = Counter()
        self.log_path = self.config.state_dir / "lambda.log"
        self._saved_environment: dict[str, str] = {}
        self._stdout: Any = sys.stdout
        self._redirected: list[tuple[logging.StreamHandler[Any], Any]] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalStack:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's and the provider's access logs
        moto_port = self.config.moto_port or free_port()
        serialise_dynamodb_requests()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
        self._moto.start()
        self.moto_url = f"http://127.0.0.1:{moto_port}"
        # moto keeps its emulated accounts in process memory: start from nothing, like a new account.
        requests.post(f"{self.moto_url}/moto-api/reset", timeout=10).raise_for_status()
        self._set_process_environment()
        provider_config = ProviderConfig.from_env(  # LOCAL_MUSICGPT_* variables choose behaviours for the stack too
            api_key=self.config.api_key,
            port=self.config.provider_port,
            max_parallel=self.config.provider_max_parallel or self.config.max_parallel_jobs,
            attenuation_limit_db=self.config.attenuation_limit_db,
            deliver_webhooks=self.config.deliver_webhooks,
            retry_after=self.config.provider_retry_after,
            min_job_seconds=self.config.provider_min_job_seconds,
            workers=self.config.provider_workers,
            behaviours=self.config.provider_behaviours,
            flaky_script=self.config.provider_flaky_script,
        )
        self.provider = LocalMusicGPT(provider_config).start()
        self._start_gateway()
        session = boto3.session.Session()
        self.resources = self.template.create(
            session, stack_name=self.config.stack_name, parameters=self._template_parameters()
        )
        self._route_input_notifications(session)
        self._configure_functions()
        if self.config.event_sources:
            self._spawn(self._dispatch_input_events, "upload-dispatcher")
            for function in ("WebhookFunction", "SubmitFunction"):
                self._spawn(partial(self._poll_event_queue, function), f"{function}-sqs")
            self._spawn(self._run_schedule, "reconcile-schedule")
        self._write_state()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._gateway is not None:
            self._gateway.shutdown()
            self._gateway.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.provider is not None:
            self.provider.stop()
        if self._moto is not None:
            self._moto.stop()
        (self.config.state_dir / "state.json").unlink(missing_ok=True)
        if isinstance(sys.stdout, _HandlerOutput):
            sys.stdout = self._stdout
        for handler, stream in self._redirected:
            log_file = handler.setStream(stream)
            if log_file is not None:
                log_file.close()
        os.environ.clear()
        os.environ.update(self._saved_environment)
        from denoise_pipeline import wiring

        wiring.reset()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ wiring
    def _set_process_environment(self) -> None:
        """Every boto3 client of this process (handlers included) talks to moto; handlers log to a file."""
        self._saved_environment = dict(os.environ)
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": self.moto_url,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
            }
        )
        os.environ.pop("AWS_PROFILE", None)
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None

    def _template_parameters(self) -> dict[str, str]:
        assert self.provider is not None
        default_hosts = self.template.document["Parameters"]["OutputHostAllowlist"]["Default"]
        return {
            "MusicGptApiKey": self.config.api_key,
            # The provider serves its outputs on loopback: allowed through the production setting, as an origin.
            "OutputHostAllowlist": f"{default_hosts},{self.provider.output_base_url}",
            "MaxParallelJobs": str(self.config.max_parallel_jobs),
            "StaleAfterSeconds": "60",
            **self.config.parameters,
        }

    def _route_input_notifications(self, session: boto3.session.Session) -> None:
        """S3 → EventBridge → the submit function, through the rule the template declares: moto matches the same
        pattern; its target here is a queue the dispatcher reads (moto cannot invoke a Lambda function)."""
        assert self.resources is not None
        sqs = session.client("sqs")
        url = sqs.create_queue(QueueName=INPUT_EVENTS_QUEUE)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = session.client("events")
        for index, pattern in enumerate(self.template.event_patterns("SubmitFunction", self.resources)):
            rule = f"{self.config.stack_name}-upload-{index}"
            events.put_rule(Name=rule, EventPattern=json.dumps(pattern), State="ENABLED")
            events.put_targets(Rule=rule, Targets=[{"Id": "submit", "Arn": arn}])
        self._input_events_url = url

    def _configure_functions(self) -> None:
        assert self.resources is not None
        assert self.provider is not None
        environment: dict[str, str] = {}
        for name in FUNCTIONS:
            environment |= self.template.function_environment(
                name,
                self.resources,
                {"WEBHOOK_BASE_URL": self.gateway_url, "MUSICGPT_API_URL": self.provider.api_base_url},
            )
        environment["POWERTOOLS_LOG_LEVEL"] = os.environ.get("LOCAL_LOG_LEVEL", "INFO")
        environment["COPY_RETRY_DELAY_SECONDS"] = str(self.config.retry_delay)  # Lambda waits minutes; here, seconds
        if self.provider.ca_bundle_path is not None:  # https outputs from the local CA, trusted through the setting
            environment["OUTPUT_CA_BUNDLE"] = str(self.provider.ca_bundle_path)
        os.environ.update(environment)
        for name in FUNCTIONS:
            self.functions[name] = _FunctionRunner(name, self.template.handler(name))
        from denoise_pipeline import wiring

        wiring.reset()
        # An invocation that records no metric (a duplicate, an empty sweep) makes Powertools warn: Lambda logs it,
        # the terminal need not.
        warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
        log_file = self.log_path.open("a", encoding="utf-8", buffering=1)
        for handler in logging.getLogger(environment.get("POWERTOOLS_SERVICE_NAME", "")).handlers:
            if isinstance(handler, logging.StreamHandler):
                self._redirected.append((handler, handler.setStream(log_file)))
        # Metrics are EMF lines printed to stdout, as in Lambda: send a handler thread's prints to the log too.
        self._stdout = sys.stdout
        sys.stdout = _HandlerOutput(self._stdout, log_file)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _log_failure(self, where: str) -> None:
        self.failures[where] += 1
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(f"--- {where} failed\n{traceback.format_exc()}\n")

    # ------------------------------------------------------------------ event sources
    def _dispatch_input_events(self) -> None:
        sqs = boto3.client("sqs")
        submit = self.functions["SubmitFunction"]
        assert self.resources is not None
        failure_queue = self.resources.ref("SubmitFailureQueue")
        while not self._stop.is_set():
            messages = sqs.receive_message(
                QueueUrl=self._input_events_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                VisibilityTimeout=120,
                AttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
            for message in messages:
                event = json.loads(message["Body"])
                handle = message["ReceiptHandle"]
                _as_eventbridge_sends_it(event)
                try:
                    submit(event)
                except Exception as exc:  # noqa: BLE001 - emulating Lambda's async retry of any error
                    self._log_failure("SubmitFunction")
                    attempt = int(message["Attributes"]["ApproximateReceiveCount"])
                    if attempt < ASYNC_ATTEMPTS:
                        delay = int(self.config.retry_delay * attempt)
                        sqs.change_message_visibility(
                            QueueUrl=self._input_events_url, ReceiptHandle=handle, VisibilityTimeout=delay
                        )
                        continue
                    sqs.send_message(QueueUrl=failure_queue, MessageBody=json.dumps(_destination_record(event, exc)))
                sqs.delete_message(QueueUrl=self._input_events_url, ReceiptHandle=handle)

    def _poll_event_queue(self, function: str) -> None:
        assert self.resources is not None
        logical_queue, mapping = self.template.event_source(function)
        url = self.resources.ref(logical_queue)
        arn = self.resources.attributes[logical_queue]["Arn"]
        batch_size = int(mapping.get("BatchSize", 10))
        sqs = boto3.client("sqs")
        runner = self.functions[function]
        while not self._stop.is_set():
            messages = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=batch_size,
                WaitTimeSeconds=1,
                VisibilityTimeout=300,
                AttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
            if not messages:
                continue
            event = sqs_event(
                arn, [(m["MessageId"], m["Body"], int(m["Attributes"]["ApproximateReceiveCount"])) for m in messages]
            )
            try:
                answer = runner(event) or {}
                failed = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
            except Exception:  # noqa: BLE001 - the whole batch goes back to the queue, as with Lambda
                self._log_failure(function)
                failed = {m["MessageId"] for m in messages}
            for message in messages:
                if message["MessageId"] in failed:
                    sqs.change_message_visibility(
                        QueueUrl=url,
                        ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=int(self.config.retry_delay),
                    )
                else:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def _run_schedule(self) -> None:
        reconcile = self.functions["ReconcileFunction"]
        while not self._stop.wait(self.config.reconcile_interval):
            try:
                reconcile(scheduled_event())
            except Exception:  # noqa: BLE001 - a failed sweep is logged and the next one runs
                self._log_failure("ReconcileFunction")

    def run_reconciler(self) -> Any:
        return self.functions["ReconcileFunction"](scheduled_event())

    # ------------------------------------------------------------------ webhook gateway
    def _start_gateway(self) -> None:
        routes = [
            (method, route, _route_pattern(route)) for method, route in self.template.http_routes("WebhookFunction")
        ]
        stack = self

        class Gateway(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                return

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                self._dispatch("POST")

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                self._dispatch("GET")

            def _dispatch(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                for route_method, route, pattern in routes:
                    match = pattern.fullmatch(path)
                    if match and route_method == method:
                        event = http_api_event(
                            method,
                            path,
                            f"{route_method} {route}",
                            match.groupdict(),
                            {name.lower(): value for name, value in self.headers.items()},
                            body,
                            self.client_address[0],
                        )
                        try:
                            answer = stack.functions["WebhookFunction"](event)
                        except Exception:  # noqa: BLE001 - API Gateway answers 500 when the integration fails
                            stack._log_failure("WebhookFunction")
                            self._reply(
                                500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}'
                            )
                            return
                        payload = answer.get("body") or ""
                        data = base64.b64decode(payload) if answer.get("isBase64Encoded") else payload.encode()
                        self._reply(int(answer.get("statusCode", 200)), answer.get("headers") or {}, data)
                        return
                self._reply(404, {"content-type": "application/json"}, b'{"message":"Not Found"}')

            def _reply(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        port = self.config.gateway_port or free_port()
        self._gateway = _GatewayServer(("127.0.0.1", port), Gateway)
        self._gateway.daemon_threads = True
        self.gateway_url = f"http://127.0.0.1:{port}"
        self._spawn(self._gateway.serve_forever, "webhook-gateway")

    # ------------------------------------------------------------------ state for the CLI
    def state(self) -> dict[str, Any]:
        assert self.resources is not None
        assert self.provider is not None
        return {
            "pid": os.getpid(),
            "moto_url": self.moto_url,
            "gateway_url": self.gateway_url,
            "provider_url": self.provider.api_base_url,
            "input_bucket": self.resources.ref("InputBucket"),
            "output_bucket": self.resources.ref("OutputBucket"),
            "jobs_table": self.resources.ref("JobsTable"),
            "log": str(self.log_path),
            "not_emulated": self.template.not_emulated(),
        }

    def _write_state(self) -> None:
        (self.config.state_dir / "state.json").write_text(json.dumps(self.state(), indent=2), encoding="utf-8")


def _as_eventbridge_sends_it(event: dict[str, Any]) -> None:
    """moto's S3 event differs from the real one: `eTag` for `etag`, and `time` in epoch seconds, not ISO 8601."""
    obj = event["detail"]["object"]
    if "eTag" in obj:
        obj["etag"] = obj.pop("eTag")
    if isinstance(event.get("time"), int | float):
        event["time"] = datetime.fromtimestamp(event["time"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _route_pattern(route: str) -> re.Pattern[str]:
    """`/webhooks/{job_id}/{token}` → a regex with one named group per path parameter."""
    parts = re.split(r"(\{[^}/]+\})", route)
    regex = "".join(f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part) for part in parts)
    return re.compile(regex)


def _destination_record(event: dict[str, Any], exc: Exception) -> dict[str, Any]:
    """The shape Lambda writes to an on-failure destination, so the replay tool works on both."""
    return {
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "requestContext": {
            "requestId": "local",
            "functionArn": f"arn:aws:lambda:{REGION}:123456789012:function:SubmitFunction",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": ASYNC_ATTEMPTS,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": str(exc), "errorType": type(exc).__name__},
    }
