"""Which services make a configuration fail: bisection over the services of a routing.

The safety net behind the label grammars. When `nginx -t` refuses a cluster's configuration and
the configuration without any service passes, the services are split in halves and checked
with a growing set of known-good ones, until each failing service is found alone against a
passing base. Those are left out (problems of theirs); every other change goes on. For k
culprits among n services this takes about 2·k·log2(n) checks; `budget` bounds them.

Two services that only fail together (say two locations nginx calls duplicate) are found as the
later of the two in the search order, with the earlier one kept: callers list the services
oldest first, so the older service keeps its routes, as it does in every other conflict. Pure: the check is injected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from interlock.errors import InterlockError

CheckWithout = Callable[[frozenset[str]], tuple[bool, str]]
"""Check the configuration without these services: (passes, what the checker said)."""

DEFAULT_BUDGET = 48


def culprits(
    services: Sequence[str], check_without: CheckWithout, failed_with: str, *, budget: int = DEFAULT_BUDGET
) -> dict[str, str] | None:
    """Service -> what the checker said with it, for the services (in the order they are
    searched: the first of two that fail together is kept) whose presence makes the
    configuration fail (it failed with all of `services`, saying `failed_with`); None when the
    failure is not a service's (it fails without any of them too) or the budget ran out."""
    everyone = frozenset(services)
    checks = 0
    good: set[str] = set()
    found: dict[str, str] = {}

    def check(excluded: frozenset[str]) -> tuple[bool, str]:
        nonlocal checks
        checks += 1
        if checks > budget:
            raise _OutOfBudget
        return check_without(excluded)

    def search(candidates: Sequence[str], said: str | None) -> None:
        """`said` is the checker's output when this step is already known to fail."""
        if said is None:
            passes, said = check(everyone - good - set(candidates))
            if passes:
                good.update(candidates)
                return
        if len(candidates) == 1:
            found[candidates[0]] = said
            return
        middle = len(candidates) // 2
        search(candidates[:middle], None)
        search(candidates[middle:], None)

    try:
        if not check(everyone)[0]:
            return None
        search(list(dict.fromkeys(services)), failed_with)
        if not found or not check(frozenset(found))[0]:
            return None
    except _OutOfBudget:
        return None
    return found


class _OutOfBudget(InterlockError):
    """Raised inside `culprits` when the checks run out; never leaves it."""
