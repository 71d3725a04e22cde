"""The platform's services. Each is self-contained: it never imports another service."""
