"""Certificates for TLS to RabbitMQ and MongoDB on one host (docker compose): a certificate
authority of the installation and a certificate of each server signed by it. (On
Kubernetes cert-manager or the organisation's authority makes them: docs/operations.md.)"""
import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

AUTHORITY_DAYS = 3650
SERVER_DAYS = 825


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _signed(subject, key, issuer, issuer_key, days, *, authority, dns_names=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=authority, path_length=None), critical=True))
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate):
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def new_certificates(folder, servers, authority_name="mantelzorg"):
    """Writes ``ca.crt`` and, for each server name, ``<name>.crt``, ``<name>.key`` and
    ``<name>.pem`` (certificate and key in one, as mongod takes them) into ``folder``; each
    server certificate is for its name and ``localhost``. The authority's key is not kept:
    a new server certificate comes with a new authority."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    authority_key = ec.generate_private_key(ec.SECP256R1())
    issuer = _name(f"{authority_name} certificate authority")
    (folder / "ca.crt").write_bytes(_pem(_signed(issuer, authority_key, issuer, authority_key,
                                                 AUTHORITY_DAYS, authority=True)))
    for server in servers:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _pem(_signed(_name(server), key, issuer, authority_key, SERVER_DAYS,
                                   authority=False, dns_names=(server, "localhost")))
        (folder / f"{server}.crt").write_bytes(certificate)
        (folder / f"{server}.key").write_bytes(_key_pem(key))
        (folder / f"{server}.pem").write_bytes(certificate + _key_pem(key))
    return folder / "ca.crt"
