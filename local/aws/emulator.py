"""Emulated AWS for the local stack: moto's HTTP server on 127.0.0.1, the template's resources, IAM enforced.

The resources are created with authorization off (CloudFormation's part), then authorization is switched on:
from then on every request is evaluated against the caller's policies (local.aws.authorization), the functions
call with credentials of their own roles, and the people and tools around the stack (tests, `denoise-local`, the
emulated event sources' plumbing) with an administrator's key.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import boto3
import requests
from moto.server import ThreadedMotoServer

from . import authorization
from .atomic_dynamodb import serialise_dynamodb_requests
from .credentials import admin_credentials, role_credentials
from .dispatch_cache import remember_backends_per_host
from .query_order import sort_query_results_once
from .response_fields import derive_response_field_aliases_once
from .s3_multipart import complete_uploads_in_one_pass, read_part_copy_ranges
from .sqs_clock import read_sqs_clock_directly, send_without_counting_messages
from .template import REGION, StackResources, Template
from .update_expressions import validate_update_expressions_once


def correct_moto() -> None:
    """Where moto differs from AWS in ways our tests and benchmarks would measure: DynamoDB requests applied
    atomically, SQS as fast with a full queue as with an empty one (its clock read directly, its messages not
    counted on every send), a request routed without re-listing every service, a part copied (UploadPartCopy) by
    reading its range of the source, not the whole object, a multipart upload completed by reading each part once,
    not by copying the whole object through memory several times, a Query's candidates sorted by keys computed once,
    an UpdateItem's expression parsed once per text and validated without passes that cannot change its answer, and
    a response's fields looked up without deriving their aliases anew for every value. Process-wide and idempotent;
    the local stack and the in-process tests both call it."""
    serialise_dynamodb_requests()
    read_sqs_clock_directly()
    send_without_counting_messages()
    remember_backends_per_host()
    read_part_copy_ranges()
    complete_uploads_in_one_pass()
    sort_query_results_once()
    validate_update_expressions_once()
    derive_response_field_aliases_once()


class EmulatedAws:
    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: ThreadedMotoServer | None = None
        self.url = ""
        self.admin: dict[str, str] = {}
        self.sessions: dict[str, str] = {}
        """Access key id → session name of every role session handed out (the function's name)."""

    def start(self) -> EmulatedAws:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
        correct_moto()
        authorization.install()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        # moto keeps its accounts in process memory: start from nothing, like a new account.
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()
        authorization.disable(self.url)
        return self

    def deploy(self, template: Template, *, stack_name: str, parameters: Mapping[str, str]) -> StackResources:
        """Create the template's resources and roles, then enforce IAM from here on."""
        session = self.session({"AWS_ACCESS_KEY_ID": "deployer", "AWS_SECRET_ACCESS_KEY": "deployer"})
        resources = template.create(session, stack_name=stack_name, parameters=parameters, endpoint_url=self.url)
        template.create_access(session, resources, endpoint_url=self.url)
        self.admin = admin_credentials()
        authorization.enable(self.url)
        return resources

    def role_credentials(self, role_arn: str, session_name: str) -> dict[str, str]:
        credentials = role_credentials(role_arn, session_name)
        self.sessions[credentials["AWS_ACCESS_KEY_ID"]] = session_name
        return credentials

    def observe(self, observer: Callable[[Mapping[str, Any], bytes], None]) -> None:
        """Call `observer(wsgi_environ, body)` before moto serves each request (benchmarks count calls with it)."""
        assert self._server is not None
        wsgi_server: Any = self._server._server  # noqa: SLF001 - moto exposes no hook of its own
        app = wsgi_server.app

        def observed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            observer(environ, body)
            result: Iterable[bytes] = app(environ, start_response)
            return result

        wsgi_server.app = observed

    def session(self, credentials: Mapping[str, str] | None = None) -> boto3.session.Session:
        keys = credentials or self.admin
        return boto3.session.Session(
            aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=keys.get("AWS_SESSION_TOKEN"),
            region_name=REGION,
        )

    def client(self, service: str, credentials: Mapping[str, str] | None = None) -> Any:
        return self.session(credentials).client(service, endpoint_url=self.url)  # type: ignore[call-overload]

    def stop(self) -> None:
        if self._server is not None:
            authorization.disable(self.url)
            self._server.stop()
            self._server = None
