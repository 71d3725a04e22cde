"""The caregiver's web pages, served by the gateway: plain Dutch, no JavaScript needed,
WCAG 2.1 AA. ``routes.py`` has the addresses, ``views.py`` what each page does,
``app.py`` what all pages share, ``session.py`` the sealed session cookie and CSRF,
``signin.py`` the identity provider's OpenID Connect sign-in, ``assets.py`` the CSS."""
