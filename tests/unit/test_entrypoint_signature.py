"""A call that does not fit its entrypoint's method is refused, as nameko refuses it, though
the method's signature is read only once (common.calls.SignatureReadOnce)."""
from types import SimpleNamespace

import pytest
from nameko.exceptions import IncorrectSignature

from common.calls import PlatformRpc
from gateway.server import JsonHttpRequestHandler


class Service:
    def answer(self, reference, code, purpose=None):
        return reference


@pytest.mark.parametrize("entrypoint", [
    PlatformRpc(), JsonHttpRequestHandler("GET", "/x")], ids=["rpc", "http"])
def test_a_call_that_does_not_fit_the_method_is_refused_every_time(entrypoint):
    entrypoint.container = SimpleNamespace(service_cls=Service)
    entrypoint.method_name = "answer"
    for _ in range(2):    # the second time from the signature read the first time
        entrypoint.check_signature(("MZ-1", "1234"), {"purpose": "P"})
        entrypoint.check_signature(("MZ-1",), {"code": "1234"})
        with pytest.raises(IncorrectSignature):
            entrypoint.check_signature(("MZ-1",), {})
        with pytest.raises(IncorrectSignature):
            entrypoint.check_signature(("MZ-1", "1234", "P", "extra"), {})
        with pytest.raises(IncorrectSignature):
            entrypoint.check_signature(("MZ-1", "1234"), {"unknown": 1})
