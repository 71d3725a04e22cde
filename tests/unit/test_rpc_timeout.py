"""The gateway's default RPC timeout, as docs/architecture.md and the README state it: a call
whose service does not answer fails after 5 s, when no setting says otherwise."""
import os
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import eventlet
import pytest
import yaml
from nameko.cli.main import setup_yaml_parser

from common.errors import Unavailable
from gateway.context import GraphQLContext
from gateway.service import GatewayService

DEFAULT_RPC_TIMEOUT = 5


def gateway_config(environ):
    """gateway/config.yml as ``nameko run`` reads it, in ``environ``."""
    setup_yaml_parser()
    with mock.patch.dict(os.environ, environ, clear=True):
        return yaml.safe_load((Path(__file__).parents[2] / "gateway/config.yml").read_text())


class Silent:
    """A service proxy whose calls never get an answer (a service paused or gone)."""

    def __getattr__(self, service_name):
        def expiring(method, seconds, actor=None, request_id=None):
            return SimpleNamespace(call_async=lambda *args, **kwargs: SimpleNamespace(
                result=lambda: eventlet.sleep(3600)))
        return SimpleNamespace(expiring=expiring)


def context_of(config):
    service = SimpleNamespace(config=config, declaration=Silent().declaration)
    return GatewayService.graphql_context(service, principal=None)


def test_the_default_rpc_timeout_is_5_seconds():
    context = context_of(gateway_config({}))
    assert context.timeout == DEFAULT_RPC_TIMEOUT
    assert context_of(gateway_config({"GATEWAY_RPC_TIMEOUT_SECONDS": "2"})).timeout == 2


def test_a_call_nobody_answers_fails_after_the_default_timeout():
    context = context_of(gateway_config({}))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        context.call("declaration", "request_declaration", {})
    waited = time.monotonic() - started
    assert DEFAULT_RPC_TIMEOUT - 0.1 <= waited < DEFAULT_RPC_TIMEOUT + 1


def test_the_request_deadline_cuts_a_call_short():
    context = GraphQLContext(SimpleNamespace(declaration=Silent().declaration), None,
                             timeout=DEFAULT_RPC_TIMEOUT, deadline_seconds=0.5)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        context.call("declaration", "request_declaration", {})
    assert time.monotonic() - started < 1.5
