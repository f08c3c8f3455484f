"""The core's ACME client (RFC 8555), through the `acme` library: one account, certificates
ordered by the HTTP-01 challenge. Blocking (HTTP to the ACME server): the core runs it in a
thread, one order at a time.

An edge: the network and the `acme`/`cryptography` libraries; imports nothing of the roles.
Private keys stay in memory and in what `order` returns (`Issued.key` is never printed).
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from interlock import __version__
from interlock.errors import InterlockError

log = logging.getLogger("interlock.acme")

KeyType = Literal["ec256", "rsa2048"]

Publish = Callable[[Mapping[str, str]], None]
"""Given token -> key authorization of an order's challenges (empty: the order is over), returns
once every proxy that may be asked answers them; raises to give the order up."""


class AcmeFailed(InterlockError):
    """An order the ACME server refused or that did not complete; the message is the server's
    reason where it gave one."""


@dataclass(frozen=True, slots=True)
class Issued:
    names: tuple[str, ...]
    chain: str
    """PEM: the certificate, then its intermediates."""
    key: str = field(repr=False)
    """PEM: the certificate's private key. Never printed."""
    not_after: float
    """When the certificate expires (seconds since the epoch)."""


def new_key(key_type: KeyType = "ec256") -> bytes:
    """A new private key, PEM (PKCS#8, unencrypted)."""
    key = rsa.generate_private_key(65537, 2048) if key_type == "rsa2048" else ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def not_after(chain: str) -> float:
    """The expiry of the first certificate of a PEM chain (seconds since the epoch)."""
    return x509.load_pem_x509_certificate(chain.encode()).not_valid_after_utc.timestamp()


class AcmeAccount:
    """One account on one ACME server, registered on first use (an account key the server
    already knows finds its account again)."""

    def __init__(
        self, directory: str, email: str, account_key: bytes, *, ca_bundle: str | None = None, timeout: float = 120
    ) -> None:
        self.directory, self.email, self.timeout = directory, email, timeout
        private = serialization.load_pem_private_key(account_key, password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise AcmeFailed("the ACME account key must be an EC P-256 key")
        self._jwk = JWKEC(key=private)
        # requests takes a CA bundle's path where the library's type says bool.
        self._verify: bool | str = ca_bundle or True
        self._client: client.ClientV2 | None = None

    def _connected(self) -> client.ClientV2:
        if self._client is not None:
            return self._client
        net = client.ClientNetwork(
            self._jwk,
            alg=ES256,
            verify_ssl=self._verify,  # type: ignore[arg-type]
            user_agent=f"interlock/{__version__}",
            timeout=30,
        )
        acme = client.ClientV2(client.ClientV2.get_directory(self.directory, net), net=net)
        registration = messages.NewRegistration.from_data(email=self.email or None, terms_of_service_agreed=True)
        try:
            acme.new_account(registration)
        except errors.ConflictError as known:
            net.account = messages.RegistrationResource(uri=known.location, body=messages.Registration())
        self._client = acme
        return acme

    def order(self, names: tuple[str, ...], key_type: KeyType, publish: Publish) -> Issued:
        """A certificate for `names`: a new key, an order, each authorization's HTTP-01
        challenge published (`publish`) and answered, then the order finalized."""
        try:
            return self._order(names, key_type, publish)
        except AcmeFailed:
            raise
        except errors.ValidationError as failed:
            raise AcmeFailed(_validation_reasons(failed)) from None
        except messages.Error as refused:
            raise AcmeFailed(_said(refused)) from None
        except requests.RequestException as exc:
            raise AcmeFailed(f"cannot reach the ACME server {self.directory}: {_network_reason(exc)}") from None
        except (errors.Error, OSError, ValueError) as exc:
            raise AcmeFailed(f"{type(exc).__name__}: {exc}") from None
        finally:
            publish({})

    def _order(self, names: tuple[str, ...], key_type: KeyType, publish: Publish) -> Issued:
        acme = self._connected()
        key = new_key(key_type)
        order = acme.new_order(crypto_util.make_csr(key, list(names)))
        tokens: dict[str, str] = {}
        answers = []
        for authorization in order.authorizations:
            if authorization.body.status == messages.STATUS_VALID:
                continue  # validated by an earlier order of this account
            name = authorization.body.identifier.value
            http = next((c for c in authorization.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
            if http is None:
                raise AcmeFailed(f"{name}: the ACME server offers no HTTP-01 challenge")
            response, validation = http.response_and_validation(self._jwk)
            tokens[http.chall.encode("token")] = validation
            answers.append((http, response))
        publish(tokens)
        for http, response in answers:
            acme.answer_challenge(http, response)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=self.timeout)
        done = acme.poll_and_finalize(order, deadline=deadline)
        chain = done.fullchain_pem
        log.info("ACME: issued a certificate for %s", ", ".join(names))
        return Issued(names, chain, key.decode(), not_after(chain))


def _network_reason(exc: requests.RequestException) -> str:
    """The system's words (`[Errno 113] No route to host`) rather than urllib3's wrapping."""
    found = re.findall(r"\[Errno -?\d+\][^'\")]*", str(exc))
    return found[-1].strip() if found else type(exc).__name__


def _said(error: messages.Error) -> str:
    """The ACME server's problem document in one line: its detail, and its type's last word."""
    kind = (error.typ or "").rsplit(":", 1)[-1]
    return f"{error.detail or error}" + (f" ({kind})" if kind else "")


def _validation_reasons(failed: errors.ValidationError) -> str:
    reasons = []
    for authorization in failed.failed_authzrs:
        name = authorization.body.identifier.value
        for challenge in authorization.body.challenges:
            if challenge.error is not None:
                reasons.append(f"{name}: {_said(challenge.error)}")
    return "; ".join(reasons) or "the ACME server did not validate the challenges"
