"""schemathesis against the running gateway, as a partner's API test tool would use it: it
loads the schema by introspection (with an admin token and without one) and sends generated
queries and mutations of every operation, with fitting input and with input that does not
fit. Whatever it sends, the gateway answers JSON,
never HTTP 500, never INTERNAL, never a stack trace."""
import json
from datetime import timezone

import eventlet
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.graphql import nodes

from tests.support import token

# Examples per operation and caller; about a minute for the whole run on the test machine.
EXAMPLES = 25
# Requests under way at once: the next examples are generated while the gateway answers.
IN_FLIGHT = 4

schemathesis.graphql.scalar("Date", st.dates().map(lambda day: nodes.String(day.isoformat())))
schemathesis.graphql.scalar("DateTime", st.datetimes(timezones=st.just(timezone.utc)).map(
    lambda moment: nodes.String(moment.isoformat())))
schemathesis.graphql.scalar("Decimal", st.one_of(
    st.decimals(min_value=-1000, max_value=1000, places=2).map(lambda n: nodes.String(str(n))),
    st.text(max_size=8).map(nodes.String)))


def _problem(response):
    """What is wrong with one answer, or None."""
    if response.status_code >= 500:
        return f"HTTP {response.status_code}"
    content_type = (response.headers.get("content-type") or [""])[0]   # lower-case keys, lists
    if not content_type.startswith("application/json"):
        return f"not JSON: {content_type}"
    text = response.content.decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except ValueError:
        return "a body that does not parse as JSON"
    if "Traceback" in text or 'File "' in text:
        return "a stack trace"
    codes = {error.get("extensions", {}).get("code") for error in body.get("errors") or ()}
    if "INTERNAL" in codes or None in codes:
        return f"error codes {sorted(map(str, codes))}"
    return None


@pytest.mark.parametrize("caller", ["admin", "anonymous"])
def test_generated_requests_get_answers_of_the_contract(platform, gql, municipalities, caller):
    headers = {"Authorization": f"Bearer {token('admin')}"} if caller == "admin" else {}
    schema = schemathesis.graphql.from_url(gql.url, headers=headers, timeout=30)
    problems, answers = [], []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, "introspection found too few operations"
    pool = eventlet.GreenPool(IN_FLIGHT)

    def answer(operation, case):
        try:
            response = case.call(headers=headers, timeout=30)
        except Exception as error:   # raised here it would be lost with its green thread
            problems.append(f"{operation.label}: {error!r} for {case.body!r:.300}")
            return
        answers.append(response.status_code)
        problem = _problem(response)
        if problem:
            problems.append(f"{operation.label}: {problem} for {case.body!r:.300}")

    for operation in operations:
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                              operation.as_strategy(GenerationMode.NEGATIVE)))
        def send(case):
            pool.spawn_n(answer, operation, case)
            eventlet.sleep(0)   # the request goes out before the next example is made

        send()
    pool.waitall()
    assert problems == []
    assert len(answers) >= 5 * len(operations), "schemathesis sent next to nothing"
