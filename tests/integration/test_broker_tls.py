"""TLS to RabbitMQ on a node of the test's own with a TLS listener and a certificate from a
certificate authority made here: the platform's connections (the outbox's, the operator
commands', nameko's through AMQP_SSL) check the broker's certificate; a connection that
does not trust the authority is refused."""
import ssl

import pytest
from kombu import Exchange, Queue
from nameko.containers import ServiceContainer
from nameko.rpc import rpc
from nameko.standalone.rpc import ClusterRpcProxy

from common import config as settings
from common.topology import broker
from ops.tls import new_certificates
from tests.conftest import free_port
from tests.rabbit_node import RabbitNode, installed

pytestmark = pytest.mark.skipif(not installed(), reason="rabbitmq-server is not installed")


def _authority(folder, name):
    """A certificate authority of its own (and a server certificate it signed)."""
    return new_certificates(folder / name, ["localhost"], authority_name=name)


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls-broker")
    ca_file = _authority(folder, "ca")
    tls_port = free_port()
    config = (f"listeners.ssl.default = 127.0.0.1:{tls_port}\n"
              f"ssl_options.cacertfile = {ca_file}\n"
              f"ssl_options.certfile = {ca_file.parent / 'localhost.crt'}\n"
              f"ssl_options.keyfile = {ca_file.parent / 'localhost.key'}\n"
              "ssl_options.verify = verify_none\n"
              "ssl_options.fail_if_no_peer_cert = false\n")
    with RabbitNode(folder / "node", free_port(), free_port(), extra_config=config):
        yield {"uri": f"amqps://guest:guest@localhost:{tls_port}/", "ca": str(ca_file),
               "folder": folder}


def _options(ca_file):
    return f"{{ca_certs: '{ca_file}', cert_reqs: {int(ssl.CERT_REQUIRED)}, server_hostname: localhost}}"


def test_the_outbox_connection_speaks_tls_and_checks_the_certificate(tls_node):
    config = {"AMQP_URI": tls_node["uri"], "AMQP_SSL": _options(tls_node["ca"])}
    assert settings.amqp_ssl(config)["cert_reqs"] == ssl.CERT_REQUIRED
    with broker(config) as connection:
        channel = connection.channel()
        queue = Queue("tls-probe", Exchange("tls-probe"), routing_key="probe", auto_delete=True)
        queue(channel).declare()
        producer = connection.Producer(channel)
        producer.publish({"a": 1}, exchange="tls-probe", routing_key="probe", declare=[queue])
        assert queue(channel).get(no_ack=True).payload == {"a": 1}


def test_a_broker_whose_certificate_is_not_trusted_is_refused(tls_node):
    other_ca = _authority(tls_node["folder"], "other")
    config = {"AMQP_URI": tls_node["uri"], "AMQP_SSL": _options(other_ca)}
    with pytest.raises(ssl.SSLError):
        with broker(config) as connection:
            connection.connect()


def test_the_operator_commands_reach_the_broker_over_tls(tls_node, monkeypatch):
    from ops.broker import reachable
    monkeypatch.setenv("AMQP_SSL", _options(tls_node["ca"]))
    assert reachable(tls_node["uri"])
    monkeypatch.delenv("AMQP_SSL")
    assert not reachable(tls_node["uri"], timeout=2)   # amqps without the authority


class Echo:
    name = "tls_echo"

    @rpc
    def echo(self, value):
        return value


def test_nameko_calls_cross_the_broker_over_tls(tls_node):
    """What every process does with AMQP_SSL from its config.yml: the services' consumers
    and the callers' proxies (the operator commands' too, ops/platform.py)."""
    config = {"AMQP_URI": tls_node["uri"],
              "AMQP_SSL": settings.amqp_ssl({"AMQP_SSL": _options(tls_node["ca"])})}
    container = ServiceContainer(Echo, config)
    container.start()
    try:
        with ClusterRpcProxy(config, timeout=20) as proxy:
            assert proxy.tls_echo.echo("over tls") == "over tls"
    finally:
        container.stop()
