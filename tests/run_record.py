"""What a test run leaves on disk under ``test-artifacts/``: the browser tests' screenshots, and
what the scan for personal data (tests/integration/test_personal_data_scan.py) reads. The
suite runs in two processes at once, and the scan runs after both, in a run of its own (`make
test`): each process writes down what it started, what personal data it sent and the error
answers it got, and the shared platform's metrics and published events before that platform
stops."""
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import requests
from kombu import Connection

from ops.platform import PROCESSES, metrics_address
from tests.support import (ANSWERS, EVENT_CAPTURE_QUEUE, SENT, STARTED, PersonalData,
                           sent_to_the_caregiver)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
RECORD = ARTIFACTS / "scan"
SCAN_MARK = "after_everything"


def only_the_scan(config):
    """Whether this run is the scan's own (``-m after_everything``), which reads the record
    the run before it left."""
    return (config.option.markexpr or "").strip() == SCAN_MARK


def process_tag(config):
    """The name of this test process: its xdist worker id, or ``main``."""
    return getattr(config, "workerinput", {}).get("workerid", "main")


def start_afresh(config, folders=("scan", "browser")):
    """A new run (not the scan's, not a worker of one) starts with no record of an earlier
    run, so that the scan never reads what another run left."""
    if hasattr(config, "workerinput") or only_the_scan(config):
        return
    for name in folders:
        shutil.rmtree(ARTIFACTS / name, ignore_errors=True)
    RECORD.mkdir(parents=True, exist_ok=True)


def keep_platform(config, platform, amqp_uri):
    """The shared platform's metrics and every event it published, written before it stops;
    its mail folder is in its data folder, which the process's record names."""
    tag = process_tag(config)
    metrics = {process.name: requests.get(
        f"http://{metrics_address(process, platform.environ)}/metrics", timeout=10).text
        for process in PROCESSES}
    events = []
    with Connection(amqp_uri) as connection:
        queue = connection.SimpleQueue(EVENT_CAPTURE_QUEUE)
        try:
            while True:
                try:
                    message = queue.get(block=False)
                except queue.Empty:
                    break
                body = message.body
                events.append(body if isinstance(body, str) else json.dumps(body))
                message.ack()
        finally:
            queue.close()
    _write(f"{tag}-platform.json", {"data": platform.environ["MANTELZORG_DATA_DIR"],
                                    "metrics": metrics, "events": events})


def keep_process(config, modules_run):
    """What this process sent, started and was answered; nothing when it ran no test."""
    if not modules_run or only_the_scan(config):
        return
    _write(f"{process_tag(config)}-{os.getpid()}.json", {
        "modules": sorted(modules_run),
        "bsns": sorted(SENT.bsns), "ibans": sorted(SENT.ibans),
        "emails": sorted(SENT.emails), "names": sorted(SENT.names),
        "logs": [str(path) for path in STARTED.logs],
        "data": [str(path) for path in STARTED.data],
        "answers": [body for _request, body in ANSWERS.answers]})


def _write(name, content):
    RECORD.mkdir(parents=True, exist_ok=True)
    (RECORD / name).write_text(json.dumps(content))


@dataclass
class Record:
    """Every process's record of the run before the scan, together."""
    sent: PersonalData = field(default_factory=PersonalData)
    modules: set = field(default_factory=set)
    logs: list = field(default_factory=list)
    data: list = field(default_factory=list)
    answers: list = field(default_factory=list)
    platforms: list = field(default_factory=list)

    def to_the_caregiver(self):
        """What a message or e-mail to a caregiver may not hold (see sent_to_the_caregiver)."""
        return sent_to_the_caregiver(self.sent)


def read_record():
    record = Record()
    for path in sorted(RECORD.glob("*.json")):
        content = json.loads(path.read_text())
        if path.name.endswith("-platform.json"):
            record.platforms.append(content)
            continue
        record.modules.update(content["modules"])
        for kind in ("bsns", "ibans", "emails", "names"):
            getattr(record.sent, kind).update(content[kind])
        record.logs.extend(map(Path, content["logs"]))
        record.data.extend(map(Path, content["data"]))
        record.answers.extend(content["answers"])
    return record
