#!/usr/bin/env python3
"""Early-answer probe: 8 clients on keep-alive connections send 100 PUTs each with a 2 KiB body
past a low rate limit (and some with a bad token); counts answers and failures below HTTP (a
broken pipe means the server dropped a connection with the body unread). Loopback only.
Usage: scripts/probes/early_answers.py target/release/deconflict"""
import os; os.makedirs("/tmp/fo", exist_ok=True)
import http.client, json, subprocess, sys, threading, uuid, datetime
binary = sys.argv[1]
d = "/tmp/fo/early"; subprocess.run(["rm", "-rf", d])
p = subprocess.Popen([binary, "dss", "--insecure-dev-auth", "--listen", "127.0.0.1:0", "--data-dir", d, "--rate-limit-per-sub", "5", "--rate-limit-burst", "10"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
base = p.stdout.readline().strip().split(" listening on ")[1]
host, port = base.replace("http://", "").split(":")
tok = subprocess.run([binary, "token", "--sub", "bursty", "--scope", "utm.strategic_coordination"], capture_output=True, text=True).stdout.strip()
def t(off): return {"value": (datetime.datetime.utcnow() + datetime.timedelta(seconds=off)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "format": "RFC3339"}
body = json.dumps({"extents": [{"volume": {"outline_circle": {"center": {"lat": 47, "lng": 8}, "radius": {"value": 100, "units": "M"}}, "altitude_lower": {"value": 0, "reference": "W84", "units": "M"}, "altitude_upper": {"value": 120, "reference": "W84", "units": "M"}}, "time_start": t(60), "time_end": t(600)}], "key": [], "state": "Accepted", "uss_base_url": "http://u.test", "pad": "x" * 2000})
errors = []; statuses = {}
lock = threading.Lock()
def worker(w):
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    for i in range(100):
        auth = "not-a-token" if (w + i) % 3 == 0 else tok
        try:
            conn.request("PUT", f"/dss/v1/operational_intent_references/{uuid.uuid4()}", body=body, headers={"Authorization": "Bearer " + auth, "Content-Type": "application/json"})
            r = conn.getresponse(); r.read()
            with lock: statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.getheader("connection", "").lower() == "close":
                conn.close(); conn = http.client.HTTPConnection(host, int(port), timeout=10)
        except Exception as e:
            with lock: errors.append(type(e).__name__)
            conn.close(); conn = http.client.HTTPConnection(host, int(port), timeout=10)
ths = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
[t.start() for t in ths]; [t.join() for t in ths]
print(binary, "statuses", statuses, "errors below HTTP", len(errors), sorted(set(errors)))
p.terminate(); p.wait()
