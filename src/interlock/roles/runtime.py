"""Process-level knobs the roles and the CLI share.

`quiet_gc` pauses the cyclic garbage collector around a rebuild: the pure pipeline allocates
hundreds of thousands of small objects but makes no reference cycles, so reference counting
frees them anyway, while each collector pass would walk the whole live snapshot. Measured in
bench/render_10k.py: about half of the build+render time with 10,000 services.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
