"""Helpers the tests share (fixtures are in conftest.py)."""
import json
import random
import re
import time
import uuid

import requests

from gateway.auth import issue_development_token

JWT_SECRET = "test-secret-" + uuid.uuid4().hex


def random_bsn():
    """A BSN that passes the 11-proef, different in every call."""
    while True:
        digits = [random.randint(0, 9) for _ in range(8)]
        total = sum(d * w for d, w in zip(digits, range(9, 1, -1)))
        last = total % 11
        if last < 10 and digits[0] != 0:
            return "".join(map(str, digits)) + str(last)


def token(role, sub=None, **claims):
    """A development token; a caregiver's carries a BSN of its own unless one is given."""
    if role == "caregiver":
        claims.setdefault("bsn", random_bsn())
    return issue_development_token(JWT_SECRET, role, sub or f"test-{role}", **claims)


class GraphQLClient:
    def __init__(self, url):
        self.url = url

    def post(self, query, variables=None, token=None, headers=None):
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        return requests.post(self.url, data=json.dumps({"query": query, "variables": variables}),
                             headers=sent, timeout=30)

    def __call__(self, query, variables=None, token=None):
        response = self.post(query, variables, token)
        assert response.headers["Content-Type"].startswith("application/json")
        return response.json()


def error_codes(answer):
    return [e["extensions"]["code"] for e in answer.get("errors", [])]


def eventually(check, timeout=15, interval=0.1):
    """Polls ``check`` until it returns something truthy; events are asynchronous."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def log_lines(platform, name):
    lines = []
    for raw in platform.log_file(name).read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines


def scrape(url, sample):
    """The value of one sample line of a /metrics page (0 when absent)."""
    text = requests.get(url, timeout=5).text
    match = re.search(rf"^{re.escape(sample)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def drain(queue):
    """The bodies waiting in a bound kombu queue, taken out."""
    bodies = []
    while (message := queue.get(no_ack=True)) is not None:
        bodies.append(message.decode())
    return bodies
