"""Every container image the deployment names is pinned by digest: the Dockerfile's base
images, compose's services and every image the Kubernetes overlays render (containers, init
containers, the RabbitMQ cluster), as `name:tag@sha256:<digest>`, the tag kept for readers. A
tag moved on the registry, or an image replaced under it, then changes nothing that runs. The
platform's own image is built here: compose and the development overlay run a local build,
and the production overlay does not render until the release has written the digest of the
image it pushed (docs/operations.md)."""
import re
import shutil

import pytest
import yaml

from tests.unit.test_compose import SERVICES as COMPOSE
from tests.unit.test_k8s import (K8S, PLATFORM_IMAGE, RELEASE_DIGEST, ROOT, TARGETS, kustomize,
                                 release, rendered)

PINNED = re.compile(r"(?P<name>[a-z0-9][a-z0-9._/-]*):(?P<tag>\w[\w.-]{0,127})"
                    r"@(?P<digest>sha256:[0-9a-f]{64})")
# The third-party images the deployment runs, by where they are named.
EXPECTED = {
    "Dockerfile": {"node", "python"},
    "docker-compose.yml": {"rabbitmq", "mongo", "prom/prometheus", "grafana/grafana"},
    "docs/operations.md": {"mongo"},
    "base": {"rabbitmq", "mongo"},
    "overlays/development": {"rabbitmq", "mongo"},
    "overlays/production": {"rabbitmq", "mongo"},
}


def pinned(image):
    """The name of a pinned image reference, or None."""
    match = PINNED.fullmatch(image)
    return match and match["name"]


def dockerfile_images():
    """The images the Dockerfile builds from (FROM and COPY --from), not its own stages."""
    stages, images = set(), []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["FROM"]:
            images.append(words[1])
            if len(words) == 4 and words[2].upper() == "AS":
                stages.add(words[3])
        elif words[:1] == ["COPY"]:
            images += [word.removeprefix("--from=") for word in words if word.startswith("--from=")]
    return [image for image in images if image not in stages]


def compose_images():
    """The images of compose's services, less the platform's own (built from the Dockerfile)."""
    return [service["image"] for service in COMPOSE.values()
            if service["image"].partition(":")[0] != PLATFORM_IMAGE]


def rendered_images(target):
    """Every `image` an overlay renders, wherever in an object it stands."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "image" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for document in rendered(target):
        walk(document)
    return found


def document_images():
    """The images the commands in docs/operations.md run (the restore, for one)."""
    doc = (ROOT / "docs" / "operations.md").read_text()
    return re.findall(r'(?:--image=|"image":\s*")([^\s"]+)', doc)


def third_party(images):
    return [image for image in images if not image.startswith(PLATFORM_IMAGE)]


def test_a_reference_counts_as_pinned_only_with_its_tag_and_a_whole_digest():
    digest = "sha256:" + "0123456789abcdef" * 4
    assert pinned(f"rabbitmq:4.1-management@{digest}") == "rabbitmq"
    assert pinned(f"prom/prometheus:v2.53.5@{digest}") == "prom/prometheus"
    for unpinned in ("rabbitmq:4.1-management", f"rabbitmq@{digest}",
                     f"rabbitmq:4.1-management@{digest[:-1]}", "rabbitmq:4.1-management@sha256:",
                     f"rabbitmq:latest@{digest.upper()}", f"rabbitmq:4.1@md5:{digest[7:]}"):
        assert not pinned(unpinned), unpinned


@pytest.mark.parametrize("source, images", [("Dockerfile", dockerfile_images),
                                            ("docker-compose.yml", compose_images),
                                            ("docs/operations.md", document_images)])
def test_the_dockerfile_compose_and_the_documented_commands_pin_every_image(source, images):
    assert [image for image in images() if not pinned(image)] == []
    assert {pinned(image) for image in images()} == EXPECTED[source]


@pytest.mark.parametrize("target", TARGETS)
def test_every_third_party_image_kubernetes_runs_is_pinned_by_digest(target):
    images = third_party(rendered_images(target))
    assert [image for image in images if not pinned(image)] == []
    assert {pinned(image) for image in images} == EXPECTED[target]


def test_one_tag_is_pinned_to_one_digest_everywhere():
    digests = {}
    everywhere = dockerfile_images() + compose_images() + document_images() + [
        image for target in TARGETS for image in third_party(rendered_images(target))]
    for match in filter(None, map(PINNED.fullmatch, everywhere)):   # the unpinned: above
        digests.setdefault(f"{match['name']}:{match['tag']}", set()).add(match["digest"])
    assert {tag: found for tag, found in digests.items() if len(found) > 1} == {}


def test_the_production_overlay_does_not_render_without_the_releases_digest(tmp_path):
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    entry = release(tree, None)
    code, output, errors = kustomize(tree / "overlays" / "production")
    assert code != 0 and output == ""
    assert f"out of bounds for value {PLATFORM_IMAGE}:{entry['newTag']}" in errors


def test_in_production_every_platform_container_runs_the_released_image():
    path = K8S / "overlays" / "production" / "kustomization.yaml"
    entry, = [image for image in yaml.safe_load(path.read_text())["images"]
              if image["name"] == PLATFORM_IMAGE]
    images = [image for image in rendered_images("overlays/production")
              if image.startswith(PLATFORM_IMAGE)]
    assert len(images) > 10
    assert set(images) == {f"{PLATFORM_IMAGE}:{entry['newTag']}@{RELEASE_DIGEST}"}


def test_the_release_step_is_documented():
    doc = (ROOT / "docs" / "operations.md").read_text()
    assert f"kustomize edit set image {PLATFORM_IMAGE}={PLATFORM_IMAGE}:" in doc
