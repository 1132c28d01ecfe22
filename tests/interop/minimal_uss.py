#!/usr/bin/env python3
"""A second, independent USS for the interoperability test: written from the standard's
OpenAPI (utm.yaml) and InterUSS's flight_planning v1, sharing no code with Deconflict (Python
standard library only). It plans through the DSS, fetches every other manager's details with a
token for that peer's host, puts every overlapping OVN in its key, refuses a plan that meets an
operation of equal or higher priority, serves its own details, notifies the subscribers the DSS
names, and records the notifications it receives.

Its geometry is deliberately simple and conservative: two volumes conflict when their
latitude/longitude boxes, altitude bands and time windows overlap (a box around a circle or
polygon contains it, so nothing that truly intersects is missed).

    python3 minimal_uss.py --port P --dss URL --token-url URL --client-id NAME

Besides the standard's endpoints it answers `GET /test/received` (the notifications it got) so
the test can check delivery; nothing else of its state is reachable.
"""

import argparse
import json
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
LOCK = threading.Lock()
# flight_plan_id -> {"id": intent id, "ovn", "version", "reference", "details"}
PLANS = {}
RECEIVED = []
TOKENS = {}


def token(audience, scope):
    key = (audience, scope)
    cached = TOKENS.get(key)
    if cached and cached[1] > time.time() + 30:
        return cached[0]
    query = urllib.parse.urlencode({
        "grant_type": "client_credentials", "sub": ARGS.client_id, "scope": scope,
        "intended_audience": audience, "issuer": "minimal-uss",
    })
    with urllib.request.urlopen(f"{ARGS.token_url}?{query}", timeout=5) as r:
        tok = json.load(r)["access_token"]
    TOKENS[key] = (tok, time.time() + 300)
    return tok


def call(method, url, body=None, scope="utm.strategic_coordination"):
    """Returns (status, JSON or None)."""
    host = urllib.parse.urlparse(url).hostname
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token(host, scope)}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=6) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, None


def rfc3339(t):
    return {"value": t, "format": "RFC3339"}


def parse_time(t):
    from datetime import datetime
    return datetime.fromisoformat(t["value"].replace("Z", "+00:00")).timestamp()


def box(volume):
    """(min_lat, min_lng, max_lat, max_lng, lower, upper, start, end) of a Volume4D."""
    v = volume["volume"]
    if v.get("outline_circle"):
        c = v["outline_circle"]
        lat, lng, r = c["center"]["lat"], c["center"]["lng"], c["radius"]["value"]
        dlat = r / 111_000 * 1.01
        dlng = r / (111_000 * max(0.01, math.cos(math.radians(lat)))) * 1.01
        lats, lngs = (lat - dlat, lat + dlat), (lng - dlng, lng + dlng)
    else:
        pts = v["outline_polygon"]["vertices"]
        lats = (min(p["lat"] for p in pts), max(p["lat"] for p in pts))
        lngs = (min(p["lng"] for p in pts), max(p["lng"] for p in pts))
    lower = v.get("altitude_lower", {}).get("value", -1e9)
    upper = v.get("altitude_upper", {}).get("value", 1e9)
    return (lats[0], lngs[0], lats[1], lngs[1], lower, upper,
            parse_time(volume["time_start"]), parse_time(volume["time_end"]))


def overlaps(a, b):
    A, B = box(a), box(b)
    return (A[0] <= B[2] and B[0] <= A[2] and A[1] <= B[3] and B[1] <= A[3]
            and A[4] <= B[5] and B[4] <= A[5] and A[6] < B[7] and B[6] < A[7])


def notify(subscribers, intent_id, operational_intent):
    for s in subscribers or []:
        base = s["uss_base_url"].rstrip("/")
        if base == ARGS.base_url:
            continue
        body = {"operational_intent_id": intent_id, "subscriptions": s["subscriptions"]}
        if operational_intent is not None:
            body["operational_intent"] = operational_intent
        call("POST", f"{base}/uss/v1/operational_intents", body)


def plan(flight_plan_id, body):
    info = body["flight_plan"]["basic_information"]
    area = info["area"]
    priority = body["flight_plan"].get("astm_f3548_21", {}).get("priority", 0)
    if info.get("usage_state") == "Closed":
        return close(flight_plan_id)
    state = "Activated" if info.get("usage_state") == "InUse" else "Accepted"
    existing = PLANS.get(flight_plan_id)
    key, blockers = set(), []
    for v in area:
        s, found = call("POST", f"{ARGS.dss}/dss/v1/operational_intent_references/query", {"area_of_interest": v})
        if s != 200:
            return {"planning_result": "Failed", "notes": f"DSS query answered {s}: {found}"}
        for ref in found["operational_intent_references"]:
            if existing and ref["id"] == existing["id"]:
                continue
            if ref["manager"] == ARGS.client_id:
                key.add(ref["ovn"])
                continue
            s, details = call("GET", f"{ref['uss_base_url'].rstrip('/')}/uss/v1/operational_intents/{ref['id']}")
            if s != 200:
                return {"planning_result": "Failed", "notes": f"details of {ref['id']} unobtainable ({s})"}
            theirs = details["operational_intent"]
            key.add(theirs["reference"]["ovn"])
            their_priority = theirs["details"].get("priority", 0)
            vols = theirs["details"].get("volumes", []) + theirs["details"].get("off_nominal_volumes", [])
            if their_priority >= priority and any(overlaps(a, b) for a in area for b in vols):
                blockers.append(f"{ref['id']} of {ref['manager']} (priority {their_priority})")
    if blockers:
        return {"planning_result": "Rejected", "notes": "conflicts with " + ", ".join(sorted(set(blockers)))}
    intent_id = existing["id"] if existing else str(uuid.uuid4())
    put = {"extents": area, "key": sorted(key), "state": state, "uss_base_url": ARGS.base_url,
           "new_subscription": {"uss_base_url": ARGS.base_url, "notify_for_constraints": False}}
    url = f"{ARGS.dss}/dss/v1/operational_intent_references/{intent_id}"
    if existing:
        url += f"/{existing['ovn']}"
    s, r = call("PUT", url, put)
    if s not in (200, 201):
        return {"planning_result": "Failed", "notes": f"DSS refused ({s}): {r}"}
    ref = r["operational_intent_reference"]
    details = {"volumes": area, "off_nominal_volumes": [], "priority": priority}
    with LOCK:
        PLANS[flight_plan_id] = {"id": intent_id, "ovn": ref["ovn"], "reference": ref, "details": details}
    notify(r.get("subscribers"), intent_id, {"reference": ref, "details": details})
    return {"planning_result": "Completed", "flight_plan_status": "OkToFly" if state == "Activated" else "Planned",
            "notes": f"operational intent {intent_id}"}


def close(flight_plan_id):
    existing = PLANS.get(flight_plan_id)
    if not existing:
        return {"planning_result": "Completed", "flight_plan_status": "Closed"}
    s, r = call("DELETE", f"{ARGS.dss}/dss/v1/operational_intent_references/{existing['id']}/{existing['ovn']}")
    if s != 200:
        return {"planning_result": "Failed", "notes": f"DSS refused the deletion ({s})"}
    with LOCK:
        PLANS.pop(flight_plan_id, None)
    notify(r.get("subscribers"), existing["id"], None)
    return {"planning_result": "Completed", "flight_plan_status": "Closed"}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, status, body=None):
        raw = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def authorized(self):
        # A minimal peer: it requires a bearer token but leaves signature checks to real USSs.
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            self.reply(401, {"message": "missing bearer token"})
            return False
        return True

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/test/received":
            with LOCK:
                return self.reply(200, {"received": list(RECEIVED)})
        if not self.authorized():
            return
        if path == "/flight_planning/v1/status":
            return self.reply(200, {"status": "Ready", "api_name": "Minimal USS", "api_version": "v1"})
        prefix = "/uss/v1/operational_intents/"
        if path.startswith(prefix):
            intent_id = path[len(prefix):]
            with LOCK:
                found = next((p for p in PLANS.values() if p["id"] == intent_id), None)
            if not found:
                return self.reply(404, {"message": f"{intent_id} is not managed here"})
            return self.reply(200, {"operational_intent": {"reference": found["reference"], "details": found["details"]}})
        self.reply(404, {"message": "no such endpoint"})

    def do_PUT(self):
        if not self.authorized():
            return
        prefix = "/flight_planning/v1/flight_plans/"
        if self.path.startswith(prefix):
            return self.reply(200, plan(self.path[len(prefix):], self.body()))
        self.reply(404, {"message": "no such endpoint"})

    def do_DELETE(self):
        if not self.authorized():
            return
        prefix = "/flight_planning/v1/flight_plans/"
        if self.path.startswith(prefix):
            return self.reply(200, close(self.path[len(prefix):]))
        self.reply(404, {"message": "no such endpoint"})

    def do_POST(self):
        if not self.authorized():
            return
        if self.path == "/uss/v1/operational_intents":
            n = self.body()
            with LOCK:
                RECEIVED.append({"id": n.get("operational_intent_id"),
                                 "manager": (n.get("operational_intent") or {}).get("reference", {}).get("manager")})
            return self.reply(204)
        self.reply(404, {"message": "no such endpoint"})


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dss", required=True)
    p.add_argument("--token-url", required=True)
    p.add_argument("--client-id", required=True)
    ARGS = p.parse_args()
    ARGS.base_url = f"http://127.0.0.1:{ARGS.port}"
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    print(f"minimal-uss listening on {ARGS.base_url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
