"""The core's certificate desk: reads the certificate pairs and htpasswd secrets the clusters'
routings name (as mounted into the core's task), has the board leave out the services that name
a pair that does not load or an htpasswd file a proxy could not use, and keeps each cluster's
`CertificateBundle` for its extension's long-poll.

A host whose pair is not mounted yet keeps the certificate it had (`bundle_for`): a rotation
never leaves a host without one. No Docker, no HTTP; the files through `CertificateShelf`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from interlock.edges.certificates import CertificateShelf
from interlock.roles.core.board import Board
from interlock.roles.runtime import changed_within
from interlock.wire.certificates import CertificateBundle, Pair, bundle_for

log = logging.getLogger("interlock.core")


class CertificateDesk:
    def __init__(self, board: Board, directory: Path) -> None:
        self.board = board
        self.shelf = CertificateShelf(directory)
        self.bundles: dict[str, CertificateBundle] = {}
        """Extension -> the certificates its proxies serve (absent until first read)."""
        self.acme_pairs: Callable[[], Mapping[tuple[str, ...], Pair]] = dict
        """The ACME desk's certificates: host names -> their pair (mounted, or loaded by it)."""
        self.challenges: dict[str, Mapping[str, str]] = {}
        """Extension -> the ACME challenges (token -> key authorization) its proxies answer now."""

    def read(self) -> bool:
        """Read the pairs the routings name (those mounted so far), leave out the services that
        name a pair that does not load, and update each cluster's bundle; True when a state or a
        bundle changed (the caller then wakes the long-polls with `Board.notify`)."""
        board = self.board
        acme = self.acme_pairs()
        pairs = {p for s in board.slots.values() if s.state for p in s.state.routing.terminated_pairs().values()}
        pairs |= set(acme.values())
        self.shelf.read(sorted(pairs))
        refused = {p: self.shelf.refused[p] for p in pairs if p in self.shelf.refused}
        secrets = {c for s in board.slots.values() if s.state for c in s.state.routing.credential_secrets()}
        self.shelf.read_credentials(sorted(secrets))
        refused_users = {c: self.shelf.refused_credentials[c] for c in secrets if c in self.shelf.refused_credentials}
        changed = False
        if board.note_refused_certificates(refused, refused_users) and board.snapshot is not None:
            changed = board.publish(board.snapshot)
        for name, slot in board.slots.items():
            if slot.state is None:
                continue
            bundle = bundle_for(
                slot.state.routing,
                self.shelf.loaded,
                self.bundles.get(name),
                acme=acme,
                challenges=self.challenges.get(name),
                credentials=self.shelf.credentials,
            )
            if self.bundles.get(name) != bundle:
                self.bundles[name] = bundle
                log.info(
                    "cluster %r: certificates %s (%d hosts, %d htpasswd secrets)",
                    slot.cluster,
                    bundle.tag,
                    len(bundle.hosts),
                    len(bundle.credentials),
                )
                changed = True
        return changed

    async def after(self, name: str, after: str, wait: float) -> CertificateBundle | None:
        """The long-poll: extension `name`'s bundle once its tag is not `after`, or None when
        `wait` seconds pass first (or the core has not read them yet)."""

        def unchanged() -> bool:
            bundle = self.bundles.get(name)
            return bundle is None or bundle.tag == after

        if not await changed_within(self.board.changed, unchanged, wait):
            return None
        return self.bundles.get(name)
