"""The deployment files: valid Kubernetes objects, and every process of the platform in
both docker-compose and Kubernetes with the same command as the launcher uses."""
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from ops.platform import PROCESSES

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))


def _documents():
    for path in MANIFESTS:
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path.name, document


@pytest.mark.parametrize("name, document", list(_documents()))
def test_manifest_is_a_valid_kubernetes_object(name, document):
    kubernetes_validate.validate(document, "1.37.0", strict=True)


def test_every_process_is_deployed_with_the_launchers_command():
    commands = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["command"]
                for _, d in _documents() if d["kind"] == "Deployment"}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for process in PROCESSES:
        expected = ["nameko", "run", "--config", process.config, process.target]
        assert commands[process.name.replace("_", "-")] == expected
        assert compose[process.name]["command"] == expected


def test_no_secret_values_are_committed():
    for _, document in _documents():
        assert document["kind"] != "Secret"
    text = (ROOT / "docker-compose.yml").read_text()
    assert "RABBITMQ_PASSWORD:?" in text and "guest" not in text
