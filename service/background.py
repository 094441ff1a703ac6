"""The background processes: ``ledger project`` and ``ledger deliver``.

On PostgreSQL ``ledger project`` (the projection, the bridge's publishing,
the expiry sweeper) starts ``ledger deliver`` (the webhook dispatcher) in a
process of its own, unless ``LEDGER_RUN_DELIVERY=false``: deliveries then take
neither the projection's GIL nor, under a full CPU, the write path's share of
it (the whole process runs ``LEDGER_WEBHOOK_NICENESS`` nicer). Each leads under
its own advisory lock, so a deployment has one of each. On SQLite the one
process does everything.
"""

from __future__ import annotations

import contextlib
import logging
import os

from projections.broker import make_broker
from service.adapters.leader import DELIVERY_LOCK_KEY
from service.adapters.migrate import migrate
from service.adapters.webhook_store import open_webhook_store
from service.application.projector import ProjectionService
from service.application.sweeper import Sweeper
from service.config import Settings, bound_connection_attempts
from service.lifecycle import bound_the_stop, child_command, stop_requested
from service.runtime import make_dispatcher, make_leadership, open_ledger

log = logging.getLogger(__name__)

AUTOGROUP_NICENESS = 19
"""The niceness of ``ledger deliver``'s autogroup (the weakest)."""


def run_projection_forever(settings: Settings, parent_pid: int | None = None) -> None:
    """``ledger project``: the projection and the sweeper without HTTP, until
    SIGINT/SIGTERM, or until process ``parent_pid`` is gone (``ledger serve``'s
    projection process ends with its server). Publishes on the bridge when
    ``LEDGER_REDIS_URL`` is set. Delivers webhooks through its own ``ledger
    deliver`` child (PostgreSQL, ``LEDGER_RUN_DELIVERY``) or in a thread (SQLite)."""
    apart = settings.backend == "postgres"
    with contextlib.ExitStack() as children:
        # First, so the dispatcher is up as early as the projection (``ledger
        # serve``'s HTTP workers stand by to lead either after a head start).
        if apart and settings.run_delivery:
            children.enter_context(child_command("deliver"))
        ledger, view = open_ledger(settings)
        broker = make_broker(settings.redis_url, settings.deployment_namespace)
        leadership = make_leadership(settings)
        projection = ProjectionService(settings, broker, ledger, leadership)
        sweeper = Sweeper(ledger, view, settings.sweep_seconds, leadership)
        webhook_store = None if apart else open_webhook_store(settings)
        dispatcher = None
        if webhook_store is not None:
            dispatcher = make_dispatcher(settings, webhook_store, leadership)
        done = stop_requested(parent_pid)
        leadership.start()
        projection.start()
        sweeper.start()
        if dispatcher is not None:
            dispatcher.start()
        log.info("projection running on %s", settings.backend)
        done.wait()
        bound_the_stop()
        if dispatcher is not None:
            dispatcher.stop()
        sweeper.stop()
        projection.stop()
        leadership.stop()
    if webhook_store is not None:
        webhook_store.close()
    ledger.close()


def run_delivery_forever(settings: Settings, parent_pid: int | None = None) -> None:
    """``ledger deliver``: the webhook dispatcher alone, while it leads
    delivery (one per deployment), until SIGINT/SIGTERM or until process
    ``parent_pid`` is gone. The whole process yields the CPU (:func:`yield_the_cpu`)."""
    yield_the_cpu(settings)
    bound_connection_attempts()
    migrate(settings)
    leadership = make_leadership(settings, DELIVERY_LOCK_KEY)
    store = open_webhook_store(settings)
    dispatcher = make_dispatcher(settings, store, leadership, niceness=0)
    done = stop_requested(parent_pid)
    leadership.start()
    dispatcher.start()
    log.info("webhook delivery running on %s", settings.backend)
    done.wait()
    bound_the_stop()
    dispatcher.stop()
    leadership.stop()
    store.close()


def yield_the_cpu(settings: Settings) -> None:
    """Makes this process (every thread it starts from now on) yield the CPU
    to the write path, on Linux: ``LEDGER_WEBHOOK_NICENESS`` nicer, and when
    ``LEDGER_WEBHOOK_IDLE_PRIORITY``:

    - under the ``SCHED_IDLE`` policy: a task of its scheduling group that
      wakes up preempts it at once (sched(7));
    - in a session of its own whose autogroup is 19 nicer, where the kernel
      schedules sessions as groups (``/proc/sys/kernel/sched_autogroup_enabled``):
      the write path's other sessions (PostgreSQL's backends, the HTTP
      server's) then outweigh it 1024 to 15, where sharing a group with the
      HTTP server would give them its whole weight (sched(7), "The autogroup
      feature"). A process that already leads a process group (started from
      a shell) keeps its session.

    Elsewhere it does nothing."""
    if settings.webhook_niceness and hasattr(os, "nice"):
        os.nice(settings.webhook_niceness)
    if settings.webhook_idle_priority:
        take_idle_priority()


def take_idle_priority() -> None:
    """Puts this process under ``SCHED_IDLE``, in a session of its own whose
    autogroup is :data:`AUTOGROUP_NICENESS` (see :func:`yield_the_cpu`); on
    Linux, skipping what the system refuses, elsewhere nothing."""
    if not hasattr(os, "sched_setscheduler"):
        return
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    with contextlib.suppress(OSError):
        os.setsid()
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(AUTOGROUP_NICENESS))
