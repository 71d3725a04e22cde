"""``GET /.well-known/jwks.json``: the public keys that verify declaration tokens offline.
The declaration service holds the keys; the gateway asks it and keeps the answer a while."""
import time

CACHE_SECONDS = 300


class PublicKeys:
    def __init__(self, cache_seconds=CACHE_SECONDS):
        self.cache_seconds = cache_seconds
        self.document = None
        self.fetched_at = 0.0

    def get(self, fetch):
        """The JWKS document; ``fetch()`` asks the declaration service when the copy is old."""
        if self.document is None or time.monotonic() - self.fetched_at > self.cache_seconds:
            document = fetch()
            self.document = {"keys": [{k: key[k] for k in ("kty", "crv", "alg", "use", "kid", "x")}
                                      for key in document["keys"]]}
            self.fetched_at = time.monotonic()
        return self.document


# One copy per gateway process, for ``/.well-known/jwks.json`` and the partners' check page.
PUBLIC_KEYS = PublicKeys()


def published_keys(context):
    """The JWKS document, asked of the declaration service through ``context`` when old."""
    return PUBLIC_KEYS.get(lambda: context.call("declaration", "signing_keys"))
