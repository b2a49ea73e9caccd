"""The aiohttp application: pages, WebSocket endpoints, stats; running it (private)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from importlib import resources

from aiohttp import web

from ._config import ServeConfig
from ._guard import token_ok
from ._hub import Hub

__all__ = ["BackgroundServer", "build_app", "make_services", "run_server"]

_STATIC = resources.files("streamrnn.apps.serve").joinpath("static")
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
          ".png": "image/png", ".json": "application/json"}
_PAGES = {"speech": "speech.html", "forecast": "forecast.html"}
HUBS = web.AppKey("hubs", dict)


def make_services(config: ServeConfig) -> dict:
    """The services of ``config.apps``, each with its model loaded."""
    services = {}
    if "speech" in config.apps:
        from ..speech import DigitBank
        from ._speech import SpeechService

        services["speech"] = SpeechService(DigitBank.load(max_streams=config.max_streams))
    if "forecast" in config.apps:
        from ._forecast import ForecastService

        services["forecast"] = ForecastService(max_streams=config.max_streams)
    return services


class _GcTimer:
    """Time spent in the cyclic garbage collector (a gc callback), for ``/stats``."""

    def __init__(self) -> None:
        self.runs = [0, 0, 0]
        self.ms = 0.0
        self.max_ms = 0.0
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            ms = (time.perf_counter() - self._t0) * 1000.0
            self.runs[info["generation"]] += 1
            self.ms += ms
            self.max_ms = max(self.max_ms, ms)

    def stats(self) -> dict:
        return {"gc_runs": list(self.runs), "gc_ms": round(self.ms, 1),
                "gc_max_ms": round(self.max_ms, 2)}


GC_TIMER = _GcTimer()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except OSError:
        return 0


def build_app(config: ServeConfig, services: dict) -> web.Application:
    """Routes: ``/`` (the first app's page), ``/speech``, ``/forecast``, ``/static/*``,
    ``/ws/speech``, ``/ws/forecast``, ``/stats`` and the services' own extra routes."""
    app = web.Application()
    hubs = {name: Hub(svc, config) for name, svc in services.items()}
    app[HUBS] = hubs

    def static(name: str):
        data = _STATIC.joinpath(name).read_bytes()
        kind = _TYPES[name[name.rfind("."):]]

        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=data, content_type=kind,
                                headers={"Cache-Control": "no-cache"})

        return handler

    names = [p.name for p in _STATIC.iterdir() if p.name[p.name.rfind("."):] in _TYPES]
    for name in names:
        app.router.add_get(f"/static/{name}", static(name))
    app.router.add_get("/", static(_PAGES[config.apps[0]]))
    for name, hub in hubs.items():
        app.router.add_get(f"/{name}", static(_PAGES[name]))
        app.router.add_get(hub.service.path, hub.handle)
        for path, handler in getattr(hub.service, "routes", dict)().items():
            app.router.add_get(path, handler)

    async def stats(request: web.Request) -> web.Response:
        if not token_ok(config.token, request.query.get("token"),
                        request.headers.get("Authorization")):
            raise web.HTTPUnauthorized(text="a valid token is required (?token=...)")
        body = {name: hub.stats() for name, hub in hubs.items()}
        body["process"] = {"cpu_s": round(time.process_time(), 3), "rss_bytes": _rss_bytes(),
                           **GC_TIMER.stats()}
        return web.json_response(body)

    app.router.add_get("/stats", stats)
    return app


async def run_server(config: ServeConfig, services: dict | None = None, *,
                     started=None, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or the task is cancelled).

    ``started(url)`` is called once the socket is bound (``port=0`` picks a free port).
    """
    services = make_services(config) if services is None else services
    app = build_app(config, services)
    # The models, torch, numba and river leave ~0.4 M objects the cyclic collector would
    # walk at every full collection (~0.1-0.3 s, a latency spike every few seconds under
    # load); they live as long as the server, so move them out of its reach.
    gc.collect()
    gc.freeze()
    if GC_TIMER not in gc.callbacks:
        gc.callbacks.append(GC_TIMER)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=1024, reuse_address=True)
    await site.start()
    port = runner.addresses[0][1]
    hubs = app[HUBS]
    for hub in hubs.values():
        hub.start(port)
    host = f"[{config.host}]" if ":" in config.host else config.host
    if started is not None:
        started(f"http://{host}:{port}")
    try:
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        for hub in hubs.values():
            await hub.stop()
        await runner.cleanup()


class BackgroundServer:
    """A server on its own thread and event loop (for tests, notebooks and benchmarks).

    Threads
    -------
    Start and stop it from one thread. The server runs on its own thread and event loop
    and is reached only through its socket.

    Examples
    --------
    >>> import json, urllib.request
    >>> with BackgroundServer(ServeConfig(apps=("speech",), port=0)) as server:
    ...     page = urllib.request.urlopen(server.url + "/").read()
    ...     stats = json.loads(urllib.request.urlopen(server.url + "/stats").read())
    >>> b"<canvas" in page, stats["speech"]["streams"]
    (True, 0)
    """

    def __init__(self, config: ServeConfig, services: dict | None = None) -> None:
        self.config = config
        self.services = make_services(config) if services is None else services
        self.url: str | None = None
        self._bound = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="streamrnn-serve")

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await run_server(self.config, self.services, started=self._started,
                             stop=self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._bound.set()

    def _started(self, url: str) -> None:
        self.url = url
        self._bound.set()

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.url.rsplit(":", 1)[1])

    def start(self) -> BackgroundServer:
        """Start and wait until the socket is bound."""
        self._thread.start()
        self._bound.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Close every connection and stop (the thread ends before this returns)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        if self._thread.is_alive():
            raise RuntimeError("the server thread did not stop within 30 s")

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
