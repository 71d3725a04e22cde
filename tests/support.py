"""Helpers the tests share (fixtures are in conftest.py)."""
import io
import importlib
import json
import random
import re
import time
import uuid
from pathlib import Path

import promql_parser
import requests
from pypdf import PdfReader
from stdnum import iban as stdnum_iban
from prometheus_client import REGISTRY

from gateway.auth import issue_development_token
from ops.platform import PROCESSES

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "mantelzorg.json"

JWT_SECRET = "test-secret-" + uuid.uuid4().hex


class PersonalData:
    """Every BSN, IBAN and personal e-mail address the tests make, so that the scan after
    the run (test_personal_data_scan.py) looks for exactly these in logs, events, metrics
    and error answers."""

    def __init__(self):
        self.bsns, self.ibans, self.emails = set(), set(), set()


SENT = PersonalData()


def random_bsn():
    """A BSN that passes the 11-proef, different in every call."""
    while True:
        digits = [random.randint(0, 9) for _ in range(8)]
        total = sum(d * w for d, w in zip(digits, range(9, 1, -1)))
        last = total % 11
        if last < 10 and digits[0] != 0:
            bsn = "".join(map(str, digits)) + str(last)
            SENT.bsns.add(bsn)
            return bsn


def random_iban():
    """A Dutch IBAN with valid check digits (for a bank code no bank has), different in
    every call."""
    account = f"{random.randint(0, 10**10 - 1):010d}"
    bban = f"TEST{account}"
    iban = "NL" + stdnum_iban.calc_check_digits("NL00" + bban) + bban
    SENT.ibans.add(iban)
    return iban


def personal_email():
    """A caregiver's e-mail address, different in every call."""
    email = f"mantelzorger.{uuid.uuid4().hex[:10]}@example.nl"
    SENT.emails.add(email)
    return email


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


def support_point_count(gql):
    """How many active support points the public overview counts."""
    answer = gql("{ supportPoints(first: 1) { total } }")
    return answer["data"]["supportPoints"]["total"]


def pdf_text(document):
    """The text of every page of a PDF, as a reader would copy it."""
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(document)).pages)


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


# --- the scan for personal data after the run ------------------------------------------

_NINE_DIGITS = re.compile(r"(?<!\d)\d(?:[\s.\-]?\d){8}(?!\d)")   # in any spacing
_EMAIL_SHAPE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _masked(value):
    return value[:2] + "…"


def personal_data_in(text, sent=SENT):
    """The kinds of personal data the tests made that ``text`` contains, each with a masked
    sample: ["a BSN (12…)", ...]. Separators (spaces, dots, hyphens) do not hide a BSN or an
    IBAN."""
    found = []
    for match in _NINE_DIGITS.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if digits in sent.bsns:
            found.append(f"a BSN ({_masked(digits)})")
    compact = re.sub(r"[\s.\-]", "", text).upper()
    found.extend(f"an IBAN ({_masked(iban)})" for iban in sent.ibans if iban in compact)
    found.extend(f"an e-mail address ({_masked(email)})"
                 for email in {m.group().lower() for m in _EMAIL_SHAPE.finditer(text)}
                 if email in sent.emails)
    return found


class AnswerRecorder:
    """Every error answer the tests' HTTP clients get (requests underneath: the GraphQL
    client, plain requests, schemathesis), for the scan after the run."""

    MAX_BODY = 100_000

    def __init__(self):
        self.answers = []
        self._original = None

    def start(self):
        import requests.sessions

        self._original = original = requests.sessions.Session.send
        recorder = self

        def send(session, request, **kwargs):
            response = original(session, request, **kwargs)
            body = response.content or b""
            if response.status_code >= 400 or b'"errors"' in body:
                recorder.answers.append((f"{request.method} {request.path_url.split('?')[0]} "
                                         f"({response.status_code})",
                                         body[:self.MAX_BODY].decode("utf-8", "replace")))
            return response

        requests.sessions.Session.send = send

    def stop(self):
        import requests.sessions

        requests.sessions.Session.send = self._original


ANSWERS = AnswerRecorder()
EVENT_CAPTURE_QUEUE = "test.personal-data-scan"


def drain(queue):
    """The bodies waiting in a bound kombu queue, taken out."""
    bodies = []
    while (message := queue.get(no_ack=True)) is not None:
        bodies.append(message.decode())
    return bodies


# --- metric names -----------------------------------------------------------------------

_SAMPLE_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum"),
                    "summary": ("", "_count", "_sum"), "info": ("_info",)}
# Grafana's variables, replaced by a value of their kind so that a query can be parsed or run.
_GRAFANA_VARIABLES = {"$__range": "1h", "$__rate_interval": "1m", "$__interval": "1m",
                      "$service": ".*"}


def exported_metric_names():
    """Every sample name some process of the platform can export: the metrics its modules
    define, as prometheus-client writes them."""
    for process in PROCESSES:
        importlib.import_module(process.target.split(":")[0])
    return {family.name + suffix for family in REGISTRY.collect()
            for suffix in _SAMPLE_SUFFIXES[family.type]}


def promql_metric_names(expression):
    """The metric names a PromQL expression selects."""
    names = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            names.append(node.name or next(m.value for m in node.matchers.matchers
                                           if m.name == "__name__"))

    promql_parser.walk(promql_parser.parse(expression), visit)
    return names


def dashboard_queries():
    """Every PromQL query of the Grafana dashboard (panels, variables, annotations), with
    Grafana's variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    found += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    for variable in dashboard["templating"]["list"]:
        selector = re.fullmatch(r"label_values\((.*), *\w+\)", variable["query"]["query"])
        found.append(selector.group(1))
    for name, value in _GRAFANA_VARIABLES.items():
        found = [query.replace(name, value) for query in found]
    return found
