"""A small client for Funnel's HTTP API (standard library only).

    from funnel_client import Funnel
    f = Funnel("http://127.0.0.1:8080", model="shop")
    f.recommend("u1", k=10)["items"]
    f.upsert_item("new-1", {"title": "Garden lamp", "category": "c5", "price": 19.5})
    f.similar("new-1", k=5)
    f.interactions([{"user": "u1", "item": "new-1"}])
    f.delete_item("new-1")
    f.promote(3, canary=0.1); f.rollback()

Every call returns the decoded JSON answer, or raises FunnelError with the server's
status, error code and message.

Several replicas, with hedged reads (the remedy for tail latency of "The Tail at Scale"):

    f = Funnel(["http://r1:8080", "http://r2:8080", "http://r3:8080"], model="shop", hedge=True)

Calls go to the replicas in turn. A read that has not answered within the p95 of the
reads seen so far is sent again to the next replica; the first answer is taken and the
other request is cancelled (its connection is closed). Hedges are capped at a tenth of
the reads (`Hedge(budget=...)`), so a replica that is slow for everyone does not double
the load. A request that cannot connect is sent to the next replica at once, for reads
and writes alike (it reached no server). Writes are never hedged. `f.stats` counts reads,
hedges, hedges that won, and failovers.
"""
import bisect
import collections
import http.client
import itertools
import json
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor


class FunnelError(Exception):
    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Hedge:
    """When to send a read's second copy: after the `quantile` of the last `window` reads'
    latencies (each read's first attempt; one cancelled counts the time it ran), once
    `min_samples` are known, never sooner than `min_delay` seconds, and for at most
    `budget` of the reads (a token bucket)."""

    def __init__(self, quantile=0.95, window=1000, min_samples=50, min_delay=0.001, budget=0.1):
        assert 0 < quantile < 1 and window >= min_samples >= 1 and 0 < budget <= 1
        self.quantile, self.min_samples, self.min_delay, self.budget = quantile, min_samples, min_delay, budget
        self._recent = collections.deque(maxlen=window)
        self._sorted = []
        self._tokens = 10.0
        self._lock = threading.Lock()

    def record(self, seconds):
        with self._lock:
            if len(self._recent) == self._recent.maxlen:
                old = self._recent[0]
                del self._sorted[bisect.bisect_left(self._sorted, old)]
            self._recent.append(seconds)
            bisect.insort(self._sorted, seconds)

    def delay(self):
        """Seconds to wait before hedging the next read; None: do not hedge it."""
        with self._lock:
            self._tokens = min(10.0, self._tokens + self.budget)
            if len(self._sorted) < self.min_samples or self._tokens < 1:
                return None
            return max(self.min_delay, self._sorted[min(len(self._sorted) - 1, int(self.quantile * len(self._sorted)))])

    def spend(self):
        with self._lock:
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class _Replica:
    """One base URL and its idle keep-alive connections."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {base!r}")
        self.base = base.rstrip("/")
        self.scheme, self.host, self.port, self.prefix = u.scheme, u.hostname, u.port, u.path.rstrip("/")
        self._idle = []
        self._lock = threading.Lock()

    def connection(self, timeout):
        with self._lock:
            if self._idle:
                c = self._idle.pop()
                c.timeout = timeout
                if c.sock is not None:
                    c.sock.settimeout(timeout)
                return c
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=timeout)

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()

    def give_back(self, c):
        with self._lock:
            if len(self._idle) < 64:
                self._idle.append(c)
                return
        c.close()


class _Attempt:
    """One request on one replica, run on a pool thread; `cancel` closes its socket."""

    def __init__(self, replica):
        self.replica, self.conn, self.cancelled, self.started = replica, None, False, time.perf_counter()
        self._lock = threading.Lock()

    def run(self, method, path, body, headers, timeout):
        conn = self.replica.connection(timeout)
        with self._lock:
            if self.cancelled:
                self.replica.give_back(conn)
                raise _Cancelled()
            self.conn = conn
        reused = conn.sock is not None
        try:
            try:
                conn.request(method, self.replica.prefix + path, body=body, headers=headers)
                r = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if not reused or self.cancelled:
                    raise
                conn.close()  # a kept-alive connection the server had closed: once more on a new one
                conn.request(method, self.replica.prefix + path, body=body, headers=headers)
                r = conn.getresponse()
            data = r.read()
            keep = not r.will_close
        except BaseException:
            conn.close()
            if self.cancelled:
                raise _Cancelled() from None
            raise
        if keep:
            self.replica.give_back(conn)
        else:
            conn.close()
        return r.status, data

    def cancel(self):
        with self._lock:
            self.cancelled = True
            c = self.conn
        if c is not None and c.sock is not None:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Cancelled(Exception):
    pass


class Funnel:
    def __init__(self, base="http://127.0.0.1:8080", model=None, api_key=None, timeout=10.0, hedge=None):
        """`base` is one URL or a list of replicas; `hedge` True (the defaults of `Hedge`), a
        `Hedge`, or None (no hedging)."""
        bases = [base] if isinstance(base, str) else list(base)
        if not bases:
            raise ValueError("no replica URL given")
        self.replicas = [_Replica(b) for b in bases]
        self.base = self.replicas[0].base
        self.api_key = api_key
        self.timeout = timeout
        self.hedge = Hedge() if hedge is True else hedge
        self.stats = collections.Counter()
        self._stats_lock = threading.Lock()
        self._turn = itertools.count()
        self._pool = ThreadPoolExecutor(max_workers=8 * len(self.replicas), thread_name_prefix="funnel-client")
        self.model = model or self.models()["models"][0]["name"]

    def close(self):
        """Closes the idle connections and stops the pool's threads."""
        self._pool.shutdown(wait=False)
        for r in self.replicas:
            r.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- plumbing
    def _call(self, method, path, query=None, body=None, request_id=None):
        if query:
            path += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        headers = {}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        if request_id:
            headers["X-Request-ID"] = request_id
        read = method == "GET" or path.endswith(("/recommend", "/query"))
        status, payload = self._send(method, path, data, headers, read)
        if status >= 400:
            try:
                err = json.loads(payload)["error"]
            except Exception:
                err = {"code": "http_error", "message": payload[:200].decode(errors="replace")}
            raise FunnelError(status, err.get("code"), err.get("message"))
        return json.loads(payload or b"null")

    def _count(self, key):
        with self._stats_lock:
            self.stats[key] += 1

    def _send(self, method, path, data, headers, read):
        """(status, body) from the first replica that answers; reads hedged as set."""
        n = len(self.replicas)
        first = next(self._turn) % n
        order = [self.replicas[(first + i) % n] for i in range(n)]
        hedge_at = None
        if read:
            self._count("reads")
            delay = self.hedge.delay() if (self.hedge and n > 1) else None
            if delay is not None:
                hedge_at = time.perf_counter() + delay
        done = threading.Condition()
        finished = []  # (attempt, status, body) or (attempt, exception), in the order they end
        running = []

        def launch(replica):
            a = _Attempt(replica)
            running.append(a)

            def work():
                try:
                    out = (a,) + a.run(method, path, data, headers, self.timeout)
                except BaseException as e:  # noqa: BLE001 - every failure goes back to the caller
                    out = (a, e)
                with done:
                    finished.append(out)
                    done.notify_all()
            self._pool.submit(work)
            return a

        def win(out):
            for r in running:
                if r is not out[0]:
                    r.cancel()
            if read and self.hedge:
                self.hedge.record(time.perf_counter() - primary.started)
                if out[0] is hedged:
                    self._count("hedges_won")
            return out[1], out[2]

        primary = launch(order[0])
        tried = 1
        hedged = None
        deadline = primary.started + self.timeout
        seen = 0
        server_error = None  # a 5xx, kept while another attempt may still answer
        failure = None
        while True:
            with done:
                if len(finished) == seen:
                    until = deadline if hedge_at is None else min(deadline, hedge_at)
                    wait = until - time.perf_counter()
                    if wait > 0:
                        done.wait(wait)
                new = finished[seen:]
                seen = len(finished)
            for out in new:
                if len(out) == 3:
                    if out[1] < 500:
                        return win(out)
                    server_error = out
                elif not isinstance(out[1], _Cancelled):
                    failure = out
                    # Could not connect: the request reached no server, so any method may go elsewhere.
                    if isinstance(out[1], ConnectionRefusedError) and tried < n:
                        self._count("failovers")
                        launch(order[tried])
                        tried += 1
            if seen == len(running):  # every attempt has ended, none with a good answer
                if server_error is not None:
                    return win(server_error)
                e = failure[1]
                if isinstance(e, (OSError, http.client.HTTPException)):
                    raise FunnelError(0, "unreachable", f"{failure[0].replica.base}: {e}") from None
                raise e
            now = time.perf_counter()
            if now >= deadline:
                for r in running:
                    r.cancel()
                raise FunnelError(0, "timeout", f"no replica answered {method} {path} within {self.timeout} s")
            if hedge_at is not None and now >= hedge_at:
                hedge_at = None  # one hedge per read at most
                if tried < n and self.hedge.spend():
                    self._count("hedges")
                    hedged = launch(order[tried])
                    tried += 1

    def _m(self, suffix=""):
        return f"/v1/models/{urllib.parse.quote(self.model, safe='')}{suffix}"

    # -- queries
    def recommend(self, user, k=10, touched=None, exclude=None, filter=None, explain=None, version=None):
        body = {"user": user, "k": k}
        for key, value in (("touched", touched), ("exclude", exclude), ("filter", filter), ("explain", explain)):
            if value is not None:
                body[key] = value
        path = self._m(f"/versions/{version}/recommend" if version else "/recommend")
        return self._call("POST", path, body=body)

    def similar(self, item, k=10, filter=None):
        return self._call("GET", self._m(f"/items/{urllib.parse.quote(item, safe='')}/similar"), {"k": k, "filter": filter})

    def search(self, text, k=10, mode="hybrid"):
        return self._call("GET", self._m("/search"), {"q": text, "k": k, "mode": mode})

    def query(self, vector, k=10, filter=None):
        body = {"vector": list(vector), "k": k}
        if filter:
            body["filter"] = filter
        return self._call("POST", self._m("/query"), body=body)

    # -- writes (durable in the server's change log when they return; never hedged)
    def upsert_item(self, item, attributes):
        return self._call("PUT", self._m(f"/items/{urllib.parse.quote(item, safe='')}"), body=attributes)

    def item(self, item):
        return self._call("GET", self._m(f"/items/{urllib.parse.quote(item, safe='')}"))

    def delete_item(self, item):
        return self._call("DELETE", self._m(f"/items/{urllib.parse.quote(item, safe='')}"))

    def user(self, user):
        return self._call("GET", self._m(f"/users/{urllib.parse.quote(user, safe='')}"))

    def interactions(self, rows):
        return self._call("POST", self._m("/interactions"), body=list(rows))

    # -- models
    def models(self):
        return self._call("GET", "/v1/models")

    def promote(self, version, canary=None):
        return self._call("POST", self._m(f"/versions/{version}/promote"), body={"canary": canary} if canary else None)

    def shadow(self, version):
        return self._call("POST", self._m(f"/versions/{version}/shadow"))

    def rollback(self):
        return self._call("POST", self._m("/rollback"))

    def compact_log(self, retire=False):
        """Compacts the server's write-ahead log through what production has folded (after a
        retrain from the log and its promote); `retire` archives for good the versions that
        folded less, instead of refusing (409)."""
        return self._call("POST", self._m("/log/compact"), body={"retire": True} if retire else None)

    def ready(self):
        try:
            return self._call("GET", "/readyz")["status"] == "ready"
        except (FunnelError, OSError):
            return False
