"""Connecting to a secured Kafka: one place that turns the settings into TLS and SASL.

Every client kbwatch makes (Faust's, the sieve's, delivery's, the admin client
that creates topics, the simulator's producer) takes its options from here, so a
cluster that requires TLS or SASL is configured once. Secrets are read here and
handed to the clients; nothing here logs them.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from streams.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (system CAs unless a CA file is set)."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.ssl_cafile or None)
    if settings.ssl_certfile:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    return context


def sasl_password(settings: Settings) -> str:
    if settings.sasl_password_file:
        return Path(settings.sasl_password_file).read_text().strip()
    return settings.sasl_password


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for every aiokafka client: consumer, producer, admin."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = sasl_password(settings)
    return options


def faust_credentials(settings: Settings) -> Any:
    """`broker_credentials` for the Faust app (None for PLAINTEXT)."""
    import faust

    context = ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=sasl_password(settings),
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
