"""The settings of TLS to RabbitMQ (AMQP_SSL) and MongoDB (MONGO_TLS_CA_FILE), as every
process reads them (the broker's side is tested on a TLS node: test_broker_tls.py)."""
from common import config as settings
from common import storage


def test_amqp_ssl_is_none_unless_set_and_yaml_from_the_environment():
    assert settings.amqp_ssl({}, environ={}) is None
    options = settings.amqp_ssl({}, environ={"AMQP_SSL": "{ca_certs: /tls/ca.crt, cert_reqs: 2}"})
    assert options == {"ca_certs": "/tls/ca.crt", "cert_reqs": 2}
    assert settings.amqp_ssl({"AMQP_SSL": {"ca_certs": "/x"}}, environ={}) == {"ca_certs": "/x"}


def test_a_real_database_is_reached_over_tls_when_its_authority_is_set(monkeypatch):
    made = []

    class Client:
        def __init__(self, uri, **options):
            made.append(options)

        def get_database(self, *args, **kwargs):
            return {name: type("Collection", (), {"create_index": lambda *a, **k: None})()
                    for name in (storage.PROCESSED_EVENTS, storage.DONE_REQUESTS)}

    monkeypatch.setattr(storage, "MongoClient", Client)
    monkeypatch.setenv("MONGO_TLS_CA_FILE", "/etc/mantelzorg/tls/ca.crt")
    storage.DocumentStore("mantelzorg_probe", "mongodb://db.internal:27017/", ":memory:")
    assert made[-1]["tls"] is True and made[-1]["tlsCAFile"] == "/etc/mantelzorg/tls/ca.crt"
    monkeypatch.delenv("MONGO_TLS_CA_FILE")
    storage.DocumentStore("mantelzorg_probe", "mongodb://db.internal:27017/", ":memory:")
    assert "tls" not in made[-1]
