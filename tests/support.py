"""Helpers the tests share (fixtures are in conftest.py)."""
import contextlib
import io
import importlib
import json
import random
import re
import time
import uuid
from datetime import date, timedelta
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
    """Every BSN, IBAN, name and personal e-mail address the tests use, so that the scan
    after the run (test_personal_data_scan.py) looks for exactly these in logs, stores,
    events, metrics and error answers."""

    def __init__(self):
        self.bsns, self.ibans, self.emails, self.names = set(), set(), set(), set()


SENT = PersonalData()
MIN_NAME_CHARS = 5   # shorter names ("A") would be found in any text


def personal_name(name):
    """A person's name the tests send (a caregiver, a care recipient, an account holder)."""
    if len(name) >= MIN_NAME_CHARS:
        SENT.names.add(name)
    return name


def recipient_name():
    """A care recipient's name, different in every call."""
    return personal_name(f"Jan {uuid.uuid4().hex[:8]}")


CAREGIVER_NAME = personal_name("Anna de Vries")
ACCOUNT_HOLDER = personal_name("A. de Vries")


def sent_to_the_caregiver(sent=SENT):
    """What a message or e-mail to a caregiver may not hold: everything the tests sent but
    the caregiver's own name, with which it greets them (the contract's messages)."""
    allowed = PersonalData()
    allowed.bsns, allowed.ibans, allowed.emails = sent.bsns, sent.ibans, sent.emails
    allowed.names = sent.names - {CAREGIVER_NAME}
    return allowed


class StartedPlatforms:
    """The log files and data folders of every platform and gateway the tests start (the
    shared one, the fault tests' own, the identity provider's gateway ...), for the scan."""

    def __init__(self):
        self.logs, self.data = [], []

    def add(self, logs, data):
        self.logs.append(Path(logs))
        self.data.append(Path(data))


STARTED = StartedPlatforms()


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


@contextlib.contextmanager
def store_in_memory(store_class, database):
    """A store of ``store_class`` on an embedded server of its own, in memory, with its
    indexes; closed afterwards."""
    store = store_class(database, "", ":memory:")
    store.ensure_indexes()
    try:
        yield store
    finally:
        store.close()


class GraphQLClient:
    def __init__(self, url):
        self.url = url

    def post(self, query, variables=None, token=None, headers=None):
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        return requests.post(self.url, data=json.dumps({"query": query, "variables": variables}),
                             headers=sent, timeout=30)

    def __call__(self, query, variables=None, token=None, headers=None):
        response = self.post(query, variables, token, headers)
        assert response.headers["Content-Type"].startswith("application/json")
        return response.json()


def support_point_count(gql, municipality_code=None):
    """How many active support points the public overview counts (those serving one
    municipality, when given)."""
    answer = gql("query($m: String) { supportPoints(municipalityCode: $m, first: 1) { total } }",
                 {"m": municipality_code})
    return answer["data"]["supportPoints"]["total"]


class Handled:
    """The events of one type that one service handles from now on, as its /metrics count
    them: how far a consumer has come, seen as an operator sees it."""

    def __init__(self, platform, service, event_type):
        self.platform, self.service, self.event_type = platform, service, event_type
        self.before = self.count()

    def count(self):
        return self.platform.events_handled(self.service, self.event_type)

    def settled(self, quiet=1.5, timeout=20):
        """Counts from now on only once earlier events stopped arriving (unchanged for
        ``quiet`` s), so that a straggler of an earlier test is not counted as ours."""
        deadline = time.monotonic() + timeout
        last, since = self.count(), time.monotonic()
        while time.monotonic() - since < quiet and time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.count()
            if now != last:
                last, since = now, time.monotonic()
        self.before = last
        return self

    def grown_by(self, more=1, timeout=15):
        """Whether exactly ``more`` have been handled since, waiting up to ``timeout`` s."""
        eventually(lambda: self.count() >= self.before + more, timeout=timeout)
        return self.count() == self.before + more


# --- travel claims ----------------------------------------------------------------------

TODAY = date.today()
CLAIMS_MUNICIPALITY = "GM0363"   # Amsterdam
CLAIM_STAFF = token("municipality", "staff-amsterdam", municipality=CLAIMS_MUNICIPALITY)
IBAN = "NL91ABNA0417164300"
SENT.ibans.add(IBAN)
CLAIM_FIELDS = """id status declarationReference amountEuros ibanMasked reason submittedAt
  trips { date fromPostcode toPostcode distanceKm returnTrip mode amountEuros }
  history { fromStatus toStatus action actorRole reason }"""
SUBMIT_CLAIM = f"""mutation($input: TravelClaimInput!) {{
  submitTravelClaim(input: $input) {{ {CLAIM_FIELDS} }} }}"""
PREVIEW_CLAIM = """query($input: TravelClaimInput!) { travelClaimPreview(input: $input) {
  amountEuros reason trips { date fromPostcode toPostcode distanceKm returnTrip mode amountEuros } } }"""
MY_CLAIMS = f"""{{ myTravelClaims {{ {CLAIM_FIELDS} }} }}"""
REQUEST_DECLARATION = """mutation($input: DeclarationRequestInput!) {
  requestDeclaration(input: $input) { id reference } }"""
ISSUE_DECLARATION = """mutation($id: ID!) {
  decideDeclaration(id: $id, decision: ISSUE) { status } }"""


class Caregiver:
    """A caregiver with a token carrying their BSN and an issued declaration for that BSN,
    in Amsterdam, through the gateway ``gql``."""

    def __init__(self, gql, purposes=("TRAVEL_COST_FUND",), bsn=None):
        self.gql = gql
        self.bsn = bsn or random_bsn()
        self.token = token("caregiver", f"cg-{uuid.uuid4().hex[:8]}", bsn=self.bsn)
        data = {"municipalityCode": CLAIMS_MUNICIPALITY,
                "caregiver": {"bsn": self.bsn, "name": CAREGIVER_NAME, "postcode": "1012 AB"},
                "careRecipient": {"name": recipient_name(), "postcode": "3511 AA",
                                  "relationship": "parent"},
                "hoursPerWeek": "12", "careSince": (TODAY - timedelta(days=400)).isoformat(),
                "purposes": list(purposes)}
        answer = gql(REQUEST_DECLARATION, {"input": data}, token=self.token)
        assert "errors" not in answer, answer
        self.declaration = answer["data"]["requestDeclaration"]
        issued = gql(ISSUE_DECLARATION, {"id": self.declaration["id"]}, token=CLAIM_STAFF)
        assert issued["data"]["decideDeclaration"], issued

    @property
    def reference(self):
        return self.declaration["reference"]

    def claim(self, *trips, reference=None, iban=IBAN, operation=SUBMIT_CLAIM,
              idempotency_key=None):
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self.gql(operation, {"input": {
            "declarationReference": reference or self.reference, "iban": iban,
            "accountHolder": ACCOUNT_HOLDER, "trips": list(trips) or [trip()]}},
            token=self.token, headers=headers)

    def submitted(self, *trips):
        answer = self.claim(*trips)
        assert "errors" not in answer, answer
        return answer["data"]["submitTravelClaim"]

    def previewed(self, *trips):
        answer = self.claim(*trips, operation=PREVIEW_CLAIM)
        assert "errors" not in answer, answer
        return answer["data"]["travelClaimPreview"]

    def mine(self):
        return self.gql(MY_CLAIMS, token=self.token)["data"]["myTravelClaims"]


def trip(**changes):
    """Amsterdam (1012) to Utrecht (3511), about 36 km in a straight line."""
    return {"date": TODAY.isoformat(), "fromPostcode": "1012 AB", "toPostcode": "3511 AA",
            "distanceKm": "40.5", "returnTrip": True, "mode": "CAR", **changes}


def operator_of(platform, monkeypatch):
    """This process runs the ``mantelzorg`` command against ``platform``: its broker, and its
    data folder, which holds the operator's development key for signed calls."""
    monkeypatch.setenv("AMQP_URI", platform.environ["AMQP_URI"])
    monkeypatch.setenv("MANTELZORG_DATA_DIR", platform.environ["MANTELZORG_DATA_DIR"])


def fund_knows_areas(rpc, pc4_csv, timeout=90):
    """Whether the travel-cost fund has, within ``timeout`` seconds, a centroid of every area
    of ``pc4_csv`` (it learns them from the registry's events; without them it refuses every
    claim)."""
    with open(pc4_csv, encoding="utf-8") as rows:
        areas = sum(1 for _ in rows) - 1
    return eventually(lambda: rpc.travel_costs.health()["pc4_areas"] == areas, timeout=timeout)


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
# Matched from the start of a run of address characters only: tried at every character of
# a long run without an @, the pattern read the rest of the run each time (a minute over the
# stores' files).
_EMAIL_SHAPE = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _masked(value):
    return value[:2] + "…"


def personal_data_in(text, sent=SENT):
    """The kinds of personal data the tests made that ``text`` contains, each with a masked
    sample: ["a BSN (12…)", ...]. Separators (spaces, dots, hyphens) do not hide a BSN or an
    IBAN, nor case an IBAN, a name or an e-mail address."""
    found = []
    for match in _NINE_DIGITS.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if digits in sent.bsns:
            found.append(f"a BSN ({_masked(digits)})")
    compact = re.sub(r"[\s.\-]", "", text).upper()
    found.extend(f"an IBAN ({_masked(iban)})"
                 for iban in sorted(set(_any_of(sent.ibans).findall(compact))))
    found.extend(f"an e-mail address ({_masked(email)})"
                 for email in {m.group().lower() for m in _EMAIL_SHAPE.finditer(text)}
                 if email in sent.emails)
    folded = re.sub(r"\s+", " ", text).casefold()
    names = {name.casefold(): name for name in sent.names}
    found.extend(f"a name ({_masked(names[name])})"
                 for name in sorted(set(_any_of(names).findall(folded))))
    return found


def _any_of(words):
    """One pattern for all of ``words`` (longest first), compiled once per set of words: a
    scan of long texts then reads each text once instead of once per word."""
    key = frozenset(words)
    if key not in _PATTERNS:
        alternatives = "|".join(re.escape(word) for word in sorted(key, key=len, reverse=True))
        _PATTERNS[key] = re.compile(alternatives or r"(?!)")
    return _PATTERNS[key]


_PATTERNS = {}


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
