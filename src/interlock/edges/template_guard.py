"""Renders a cluster with an operator's custom `Template` in a child process under CPU, memory
and time limits, so a template that loops or grows without bound costs that configuration (a
TemplateFailed, the last good one keeps serving), never the extension. The built-in template
renders in-process: it is ours, tested, and on the hot path. The caller passes its kind's
renderer.

An edge: it forks. Must not import roles.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from interlock.config.schema import ExtensionConfig
from interlock.errors import TemplateFailed
from interlock.model.routing import Routing
from interlock.render.bundle import RenderedConfig

TIME_LIMIT = 20.0
"""Seconds a custom template may take to render (wall clock)."""
CPU_SECONDS = 15
MEMORY_BYTES = 1 << 30
"""Address space a custom template's render may add to what the extension already maps."""


Render = Callable[[Routing, ExtensionConfig], RenderedConfig]


def render_with_limits(render: Render, routing: Routing, ext: ExtensionConfig) -> RenderedConfig:
    """`render(routing, ext)`, in a child process when `ext` has a custom template."""
    if not ext.template:
        return render(routing, ext)
    receiver, sender = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(
        target=_render_child, args=(sender, render, routing, ext), daemon=True
    )
    child.start()
    sender.close()
    try:
        if not receiver.poll(TIME_LIMIT):
            raise TemplateFailed(f"the custom template did not render within {TIME_LIMIT:.0f} s; refused")
        try:
            ok, result = receiver.recv()
        except EOFError:
            raise TemplateFailed(
                f"the custom template's render ran out of memory ({MEMORY_BYTES >> 20} MiB more) or CPU time "
                f"({CPU_SECONDS} s); refused"
            ) from None
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)
    if not ok:
        raise TemplateFailed(str(result))
    assert isinstance(result, RenderedConfig)
    return result


def _render_child(sender: Connection, render: Render, routing: Routing, ext: ExtensionConfig) -> None:
    try:
        used = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (used + MEMORY_BYTES, used + MEMORY_BYTES))
        resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
        try:
            sender.send((True, render(routing, ext)))
        except MemoryError:
            sender.send(
                (False, f"the custom template's render ran out of memory (more than {MEMORY_BYTES >> 20} MiB); refused")
            )
        except TemplateFailed as exc:
            sender.send((False, str(exc)))
        except Exception as exc:  # the boundary of the child: anything a template does is its failure
            sender.send((False, f"the custom template failed: {type(exc).__name__}: {exc}"))
        sender.close()
    finally:
        os._exit(0)
