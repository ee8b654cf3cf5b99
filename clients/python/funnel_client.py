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
"""
import json
import urllib.error
import urllib.parse
import urllib.request


class FunnelError(Exception):
    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Funnel:
    def __init__(self, base="http://127.0.0.1:8080", model=None, api_key=None, timeout=10.0):
        self.base = base.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.model = model or self.models()["models"][0]["name"]

    # -- plumbing
    def _call(self, method, path, query=None, body=None, request_id=None):
        url = self.base + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", "Bearer " + self.api_key)
        if request_id:
            req.add_header("X-Request-ID", request_id)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read())["error"]
            except Exception:
                err = {"code": "http_error", "message": str(e)}
            raise FunnelError(e.code, err.get("code"), err.get("message")) from None

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

    # -- writes (durable in the server's write-ahead log when they return)
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

    def ready(self):
        try:
            return self._call("GET", "/readyz")["status"] == "ready"
        except (FunnelError, OSError):
            return False
