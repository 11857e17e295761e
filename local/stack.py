"""The offline stack: what `sam build` ships, run the way the template wires it, on emulated AWS with IAM enforced.

Four parts, each its own package or module:
- emulated AWS (local.aws): template.yaml through the real SAM transform; its buckets, table, queues, secrets,
  bus, log groups, roles and resource policies created in moto's HTTP server; then authorization on, with
  resource-level checks for every service the functions call;
- the Lambda emulator (local.lambdas): each function's `.aws-sam/build/<Function>` artifact (rebuilt by `make build`
  when src/ or the template changed) runs in its own processes, one per execution environment, under the real
  runtime interface client with the runtime's SDK, the function's environment, timeout and role credentials;
  event sources from the transformed template (EventBridge rule → asynchronous invocation, SQS event source
  mappings, the schedule);
- the gateway (local.gateway): the HTTP API's routes as payload v2 events;
- the provider (local.provider): the MusicGPT-compatible server with a real denoiser.

What differs from a deployment, each because the emulation has nothing else to offer:
- endpoints: the API Gateway URL (the gateway's address), the provider's URL (plain http on loopback; the template
  accepts https only), AWS_ENDPOINT_URL (moto), and the provider's output origin added to OutputHostAllowlist;
- time: StaleAfterSeconds 60, failed messages and events retried after `retry_delay` × attempt, the copy's retry
  delay (COPY_RETRY_DELAY_SECONDS) and the schedule every `reconcile_interval` seconds;
- scale: at most `environments_per_function` environments per function (Lambda scales to the account's limit);
- trust: OUTPUT_CA_BUNDLE names the local provider's throwaway CA when it serves https;
- the artifact holds the template's arm64 wheels and runs on this machine's x86_64 (a wheel with only a native
  extension for aarch64 would not import here; today every dependency has a pure-Python path).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from .aws.emulator import EmulatedAws
from .aws.template import ACCOUNT_ID, REGION, FunctionConfig, QueueSource, StackResources, Template, TemplateError
from .gateway import Gateway
from .lambdas.environment import FunctionSpec, InvocationResult
from .lambdas.event_sources import AsyncInvoker, QueuePoller, RuleBridge, Schedule
from .lambdas.events import scheduled_event
from .lambdas.function import LocalFunction
from .lambdas.runtime import Runtime, ensure_artifacts, ensure_runtime
from .provider.config import Behaviour, FlakyStep
from .provider.server import LocalMusicGPT, ProviderConfig

FUNCTIONS = ("SubmitFunction", "WebhookFunction", "ReconcileFunction")
LOCAL_ENVIRONMENT_CAP = 4
"""Execution environments per function at most (each a process of ~60 MB and 0.5 s of start-up on 2 cores);
the function's reserved concurrency caps it further."""


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
    """A failed SQS message is visible again after this many seconds (the queue's visibility timeout in AWS), a
    failed asynchronous event is retried after this × its attempt number (Lambda waits about 1 then 2 minutes)."""
    moto_port: int = 0
    gateway_port: int = 0
    provider_port: int = 0
    state_dir: Path = Path(".local-stack")
    parameters: dict[str, str] = field(default_factory=dict)
    """Extra template parameter overrides."""
    environment: dict[str, str] = field(default_factory=dict)
    """Function variables set last, over the template's (e.g. a provider URL that never answers)."""
    template_path: Path | None = None
    """Another template.yaml (e.g. a copy with one policy statement removed); the build still comes from src/."""
    artifacts: dict[str, Path] = field(default_factory=dict)
    """A function's artifact other than its `sam build` output (e.g. a copy without one dependency)."""
    event_sources: bool = True
    """False = nothing feeds the functions on its own (benchmarks invoke them directly)."""
    environments_per_function: int = LOCAL_ENVIRONMENT_CAP
    provider_workers: int | None = None
    provider_behaviours: frozenset[Behaviour] | None = None
    """How the local provider behaves (progress callbacks, https outputs, a flaky API...): local.provider.config;
    None = LOCAL_MUSICGPT_BEHAVIOURS, else documented."""
    provider_flaky_script: tuple[FlakyStep, ...] | None = None


class LocalStack:
    def __init__(self, config: LocalStackConfig | None = None) -> None:
        self.config = config or LocalStackConfig()
        self.template = Template.load(self.config.template_path) if self.config.template_path else Template.load()
        self.aws = EmulatedAws(self.config.moto_port)
        self.provider: LocalMusicGPT | None = None
        self.gateway: Gateway | None = None
        self.resources: StackResources | None = None
        self.functions: dict[str, LocalFunction] = {}
        self.function_configs: dict[str, FunctionConfig] = {}
        self.async_invokers: dict[str, AsyncInvoker] = {}
        self.pollers: list[QueuePoller] = []
        self.log_dir = self.config.state_dir / "logs"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        """Every event source's thread (pollers, bridges, asynchronous invocation workers, schedules)."""
        self._saved_environment: dict[str, str] = {}

    @property
    def moto_url(self) -> str:
        return self.aws.url

    @property
    def gateway_url(self) -> str:
        return self.gateway.url if self.gateway else ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalStack:
        try:
            return self._start()
        except BaseException:
            self.stop()  # nothing half-started outlives a failed start (servers, processes, IAM enforcement)
            raise

    def _start(self) -> LocalStack:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        artifacts = ensure_artifacts(FUNCTIONS) | self.config.artifacts
        runtime = ensure_runtime()
        self.aws.start()
        self.provider = LocalMusicGPT(self._provider_config()).start()
        self.gateway = Gateway(self.config.gateway_port)
        self.resources = self.aws.deploy(
            self.template, stack_name=self.config.stack_name, parameters=self._template_parameters()
        )
        self._use_admin_credentials()
        overrides = self._environment_overrides()
        for name in FUNCTIONS:
            config = self.template.function_config(name, self.resources, overrides)
            self.function_configs[name] = config
            self.functions[name] = self.function(name, artifacts[name], runtime)
        self.gateway.start(
            {
                (method, path): self.functions[name] if self._api_may_invoke(name, method, path) else None
                for name in FUNCTIONS
                for method, path in self.template.http_routes(name)
            }
        )
        if self.config.event_sources:
            self._start_event_sources()
        self._write_state()
        return self

    def stop(self) -> None:
        """Event sources stop taking work, every function's processes are killed (an invocation in flight ends
        with Runtime.ExitError), then the threads get one shared deadline to notice."""
        self._stop.set()
        if self.gateway is not None:
            self.gateway.stop()
        for function in self.functions.values():
            function.close()
        for invoker in self.async_invokers.values():
            invoker.cancel_retries()
        deadline = time.monotonic() + 10
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.provider is not None:
            self.provider.stop()
        self.aws.stop()
        (self.config.state_dir / "state.json").unlink(missing_ok=True)
        if self._saved_environment:
            os.environ.clear()
            os.environ.update(self._saved_environment)
            boto3.setup_default_session()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ configuration
    def _provider_config(self) -> ProviderConfig:
        return ProviderConfig.from_env(  # LOCAL_MUSICGPT_* variables choose behaviours for the stack too
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

    def _environment_overrides(self) -> dict[str, str]:
        """Template variables whose deployed value the emulation cannot serve."""
        assert self.provider is not None
        assert self.gateway is not None
        return {"WEBHOOK_BASE_URL": self.gateway.url, "MUSICGPT_API_URL": self.provider.api_base_url}

    def _local_variables(self) -> dict[str, str]:
        """Settings the template leaves at their defaults, set for local time scales and the local CA."""
        assert self.provider is not None
        variables = {
            "COPY_RETRY_DELAY_SECONDS": str(self.config.retry_delay),
            "POWERTOOLS_LOG_LEVEL": os.environ.get("LOCAL_LOG_LEVEL", "INFO"),
        }
        if self.provider.ca_bundle_path is not None:  # https outputs from the local CA, trusted through the setting
            variables["OUTPUT_CA_BUNDLE"] = str(self.provider.ca_bundle_path)
        return variables

    def _platform_variables(self) -> dict[str, str]:
        """What makes the runtime's SDK talk to the emulation instead of AWS, and nothing of this machine's."""
        return {
            "AWS_ENDPOINT_URL": self.aws.url,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def _use_admin_credentials(self) -> None:
        """Clients of this process (tests, the CLI's helpers) call the emulation as its administrator."""
        self._saved_environment = dict(os.environ)
        os.environ.update(
            {**self.aws.admin, "AWS_ENDPOINT_URL": self.aws.url, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}
        )
        os.environ.pop("AWS_PROFILE", None)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        boto3.setup_default_session()  # the default session read the keys it had before

    # ------------------------------------------------------------------ event sources
    def _start_event_sources(self) -> None:
        assert self.resources is not None
        resources = self.resources
        platform_sqs = self.aws.client("sqs")
        for name in self._asynchronously_invoked():
            config = self.function_configs[name]
            role_sqs = self.aws.client("sqs", self._role_credentials(name))

            def send(arn: str, body: str, sqs: Any = role_sqs) -> None:  # Lambda sends with the function's role
                sqs.send_message(QueueUrl=resources.queue_url(arn), MessageBody=body)

            invoker = AsyncInvoker(
                self.functions[name],
                function_arn=config.arn,
                config=self.template.async_invoke_config(name, resources),
                send_to_destination=send,
                workers=self.functions[name].max_environments,
                retry_delay=self.config.retry_delay,
                stop=self._stop,
            )
            self.async_invokers[name] = invoker
            self._threads += invoker.threads
        events = self.aws.client("events")
        for rule in self.template.rule_sources(resources):
            name = resources.ref(rule.logical_id)
            url = platform_sqs.create_queue(QueueName=f"{name}-deliveries")["QueueUrl"]
            arn = platform_sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            events.put_rule(Name=name, EventPattern=json.dumps(rule.pattern), State="ENABLED")
            events.put_targets(Rule=name, Targets=[{"Id": rule.function, "Arn": arn}])
            permitted = self.template.invoke_permitted(
                rule.function, "events.amazonaws.com", resources.attributes[rule.logical_id]["Arn"], resources
            )
            target = self.async_invokers[rule.function].submit if permitted else self._dead_letter(rule.dead_letter_arn)
            self._threads.append(RuleBridge(platform_sqs, url, target, self._stop).thread)
        for source in self.template.queue_sources():
            self._threads += self._poll(source, platform_sqs).threads
        for schedule in self.template.schedules(resources):
            timer = Schedule(self.async_invokers[schedule.function], self.config.reconcile_interval, self._stop)
            self._threads.append(timer.thread)

    def _asynchronously_invoked(self) -> set[str]:
        assert self.resources is not None
        return {rule.function for rule in self.template.rule_sources(self.resources)} | {
            schedule.function for schedule in self.template.schedules(self.resources)
        }

    def _poll(self, source: QueueSource, platform_sqs: Any) -> QueuePoller:
        """An event source mapping, after the checks CreateEventSourceMapping makes: the role may read the queue's
        attributes, and the queue's visibility timeout is at least the function's timeout."""
        assert self.resources is not None
        config = self.function_configs[source.function]
        function = self.functions[source.function]
        role_sqs = self.aws.client("sqs", self._role_credentials(source.function))
        queue_url = self.resources.ref(source.queue)
        try:
            attributes = role_sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])
        except ClientError as exc:
            raise TemplateError(f"{source.logical_id}: Lambda could not create the mapping: {exc}") from exc
        visibility = int(attributes["Attributes"]["VisibilityTimeout"])
        if visibility < config.timeout_seconds:
            raise TemplateError(
                f"{source.logical_id}: the queue's visibility timeout ({visibility} s) is less than the function's "
                f"timeout ({config.timeout_seconds} s); Lambda refuses the mapping"
            )
        # A function that also serves an HTTP route keeps one environment for it: Lambda would scale past the
        # pollers instead of making a callback wait behind long copies (here the environments are capped).
        routed = bool(self.template.http_routes(source.function)) and function.max_environments > 1
        limit = function.max_environments - routed
        poller = QueuePoller(
            source,
            function,
            queue_url=queue_url,
            queue_arn=self.resources.attributes[source.queue]["Arn"],
            role_sqs=role_sqs,
            platform_sqs=platform_sqs,
            concurrency=min(source.maximum_concurrency or limit, limit),
            retry_delay=self.config.retry_delay,
            stop=self._stop,
        )
        self.pollers.append(poller)
        return poller

    def function(self, name: str, artifact: Path, runtime: Runtime) -> LocalFunction:
        """A pool of execution environments running `artifact` as the stack's function `name` (its
        configuration, variables and role)."""
        config = self.function_configs[name]
        spec = FunctionSpec(
            name=config.name,
            handler=config.handler,
            artifact=artifact,
            timeout_seconds=float(config.timeout_seconds),
            memory_mb=config.memory_mb,
            environment={**config.environment, **self._local_variables(), **self.config.environment},
            log_group=config.log_group,
            arn=config.arn,
            region=REGION,
            log_format="JSON" if config.log_format.upper() == "JSON" else "Text",
            application_log_level=config.application_log_level,
        )
        return LocalFunction(
            spec,
            runtime,
            credentials=lambda: self._role_credentials(name),
            extra_environment=self._platform_variables(),
            log_dir=self.log_dir,
            max_environments=min(config.reserved_concurrency or 1000, self.config.environments_per_function),
        )

    def _role_credentials(self, function: str) -> dict[str, str]:
        """A new session of the function's role, named after the function, as Lambda assumes it."""
        config = self.function_configs[function]
        return self.aws.role_credentials(config.role_arn, config.name)

    def _api_may_invoke(self, function: str, method: str, path: str) -> bool:
        assert self.resources is not None
        api = next(logical_id for logical_id, _ in self.template.resources_of_type("AWS::ApiGatewayV2::Api"))
        source = f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{self.resources.ref(api)}/$default/{method}{path}"
        return self.template.invoke_permitted(function, "apigateway.amazonaws.com", source, self.resources)

    def _dead_letter(self, queue_arn: str | None) -> Callable[[Any], None]:
        """What EventBridge does with an event it may not deliver: its retries end in the target's DLQ."""
        assert self.resources is not None
        resources = self.resources
        sqs = self.aws.client("sqs")

        def send(event: Any) -> None:
            if queue_arn is not None:
                sqs.send_message(QueueUrl=resources.queue_url(queue_arn), MessageBody=json.dumps(event))

        return send

    def run_reconciler(self) -> Any:
        """One sweep now, invoked synchronously; its report."""
        result = self.invoke("ReconcileFunction", scheduled_event())
        if result.error_type is not None:
            raise RuntimeError(f"ReconcileFunction failed: {result.error_type}: {result.error_message}")
        return result.payload

    def invoke(self, function: str, event: Any) -> InvocationResult:
        return self.functions[function].invoke(event)

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
            "credentials": self.aws.admin,
            "region": REGION,
            "logs": {name: str(self.log_dir / f"{config.name}.log") for name, config in self.function_configs.items()},
            "schedules": {
                schedule.logical_id: f"{schedule.expression} (every {self.config.reconcile_interval:g} s here)"
                for schedule in self.template.schedules(self.resources)
            },
            "not_emulated": self.template.not_emulated(),
        }

    def _write_state(self) -> None:
        path = self.config.state_dir / "state.json"
        path.write_text(json.dumps(self.state(), indent=2), encoding="utf-8")
        path.chmod(0o600)  # it holds the emulation's administrator key
