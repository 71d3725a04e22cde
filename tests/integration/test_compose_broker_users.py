"""`mantelzorg broker-users`, the compose step that makes each process's RabbitMQ user with
the permissions of deploy/k8s/base/rabbitmq-users.yaml, on the real broker: a process's user
works on its own queues and is refused another's. (The users get names of their own here:
users are global on the shared test broker.)"""
import uuid

import pytest
import yaml
from amqp.exceptions import AccessRefused
from kombu import Connection, Exchange, Queue

from ops import cli
from ops.broker import delete_user
from tests.conftest import throwaway_vhost
from tests.unit.test_k8s import K8S


def test_each_user_may_use_its_own_queues_and_not_another_s(tmp_path, monkeypatch):
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    documents = []
    for document in yaml.safe_load_all((K8S / "base" / "rabbitmq-users.yaml").read_text()):
        if document and document["kind"] == "Permission":
            document["spec"]["userReference"]["name"] = prefix + \
                document["spec"]["userReference"]["name"]
            documents.append(document)
    users_file = tmp_path / "rabbitmq-users.yaml"
    users_file.write_text(yaml.safe_dump_all(documents))
    passwords = {name: uuid.uuid4().hex for name in ("registry", "declaration")}
    for name, password in passwords.items():
        monkeypatch.setenv(cli.broker_password_variable(prefix + name), password)
    with throwaway_vhost("users") as admin_uri:
        vhost = admin_uri.rsplit("/", 1)[1]
        monkeypatch.setenv("AMQP_URI", admin_uri)
        try:
            assert cli.main(["broker-users", str(users_file), "--vhost", vhost]) == 0
            host = admin_uri.split("@", 1)[1].split("/", 1)[0]
            registry = f"amqp://{prefix}registry:{passwords['registry']}@{host}/{vhost}"
            with Connection(registry) as connection:
                channel = connection.channel()
                Queue("rpc-registry", Exchange("nameko-rpc", type="topic"),
                      durable=True)(channel).declare()
                with pytest.raises(AccessRefused):
                    Queue("rpc-declaration", durable=True)(connection.channel()).declare()
        finally:
            for name in passwords:
                delete_user(admin_uri, prefix + name)
