"""Fixtures the integration tests of several services share (the platform's own are in
tests/conftest.py)."""
import pytest

from tests.integration.test_declaration import AMSTERDAM, READ_SETTINGS, UTRECHT
from tests.support import eventually


@pytest.fixture(scope="module")
def known(municipalities, gql):
    """The declaration service has learnt the municipalities the registry imported (until
    then their settings are BAD_USER_INPUT: unknown municipality)."""
    for code in (AMSTERDAM, UTRECHT, "GM0014", "GM0034", "GM0153", "GM1992"):
        assert eventually(lambda: "errors" not in gql(READ_SETTINGS, {"code": code}),
                          timeout=60), code
    return municipalities
