"""The emulator's server: its aiohttp application, its life cycle (thread or event loop) and
the :class:`Emulator` class that combines the parts (resources, identity, faults, handlers, routing)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any

from aiohttp import web

from airflow_provider_dataqc.testing.emulator.routing import RoutingMixin


class Emulator(RoutingMixin):
    """DataArts Quality + IAM on ``http://127.0.0.1:<port>``.

    Use :meth:`start` / :meth:`stop` (or ``with Emulator() as emu:``) to serve from a background
    thread, or :meth:`start_async` / :meth:`stop_async` inside a running event loop. All state
    readers (``requests``, :meth:`count`, :meth:`imported` ...) are safe to call from other threads.

    Attributes you may change at runtime: ``faults`` (a :class:`FaultPlan` or ``None``),
    ``download_size``, ``export_script`` / ``import_script`` (the life cycle of new exports /
    imports: status strings or step mappings as for :meth:`script`), ``token_lifetime``,
    ``flow_control`` (a :class:`FlowControl` or ``None``), ``not_found_status`` (404, 400, 500),
    ``stopped_status`` (what a stopped quality-job run answers).
    The constructor's arguments are listed in the package docstring.
    """

    # ---------------------------------------------------------------- life of the server
    def _app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_upload_size)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def start_async(self) -> Emulator:
        """Start listening in the running event loop; ``url`` is set on return."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.SockSite(runner, sock, backlog=1024)
        await site.start()
        self._runner = runner
        self.port = sock.getsockname()[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        return self

    async def stop_async(self) -> None:
        """Stop listening and close open connections."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def start(self) -> Emulator:
        """Serve from a background thread with its own event loop; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as err:  # reported to the caller of start()
                failure.append(err)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop_async())
                loop.close()

        thread = threading.Thread(target=serve, name="dataqc-emulator", daemon=True)
        thread.start()
        if not ready.wait(30):
            raise RuntimeError("the emulator did not start within 30 s")
        if failure:
            thread.join(5)
            raise failure[0]
        self._loop, self._thread = loop, thread
        return self

    def stop(self) -> None:
        """Stop the background server started by :meth:`start` (idempotent)."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(self.stop_async(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def running_emulator(**kwargs: Any) -> Iterator[Emulator]:
    """``with running_emulator(download_size=4096) as emu: ... emu.url ...`` (a started emulator)."""
    emulator = Emulator(**kwargs)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@contextlib.asynccontextmanager
async def running_emulator_async(**kwargs: Any) -> AsyncIterator[Emulator]:
    """The same as :func:`running_emulator`, in the running event loop."""
    emulator = Emulator(**kwargs)
    await emulator.start_async()
    try:
        yield emulator
    finally:
        await emulator.stop_async()
