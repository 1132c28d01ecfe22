#!/usr/bin/env python3
"""Starvation probe: a cheap query's latency alone and beside four expensive ones (1000-vertex
stars over a city of 5,000 intents) against one DSS on loopback. Bounded: 5,000 creates, 600
cheap queries. Usage: scripts/probes/starvation.py target/release/deconflict"""
# A cheap query's latency alone and beside 4 expensive ones (1000-vertex stars over a city of
# 5,000 intents), against one DSS. Usage: starve.py <deconflict binary>
import json, math, os, subprocess, sys, threading, time, urllib.request, uuid, datetime, statistics, concurrent.futures as cf
binary = sys.argv[1]
os.makedirs("/tmp/fo", exist_ok=True)
d = "/tmp/fo/starve"; subprocess.run(["rm", "-rf", d])
p = subprocess.Popen([binary, "dss", "--insecure-dev-auth", "--listen", "127.0.0.1:0", "--data-dir", d, "--rate-limit-per-sub", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
base = p.stdout.readline().strip().split(" listening on ")[1]
tok = subprocess.run([binary, "token", "--sub", "s", "--scope", "utm.strategic_coordination"], capture_output=True, text=True).stdout.strip()
def t(off): return {"value": (datetime.datetime.utcnow() + datetime.timedelta(seconds=off)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "format": "RFC3339"}
alt = {"altitude_lower": {"value": 0, "reference": "W84", "units": "M"}, "altitude_upper": {"value": 120, "reference": "W84", "units": "M"}}
def req(method, path, body, sub=None):
    r = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method, headers={"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
    try: return urllib.request.urlopen(r, timeout=60).status
    except urllib.error.HTTPError as e: return e.code
def create(i):
    lat, lng = 47.0 + (i // 100) * 0.004, 8.0 + (i % 100) * 0.006
    body = {"extents": [{"volume": {"outline_circle": {"center": {"lat": lat, "lng": lng}, "radius": {"value": 100, "units": "M"}}, **alt}, "time_start": t(60), "time_end": t(3600)}], "key": [], "state": "Accepted", "uss_base_url": "http://u.test"}
    return req("PUT", f"/dss/v1/operational_intent_references/{uuid.uuid4()}", body)
with cf.ThreadPoolExecutor(16) as ex: codes = list(ex.map(create, range(5000)))
print("created", codes.count(201))
star = [{"lat": 47.1 + 0.1 * math.sin(2*math.pi*k/1000) * (0.6 + 0.4*((k*7919) % 13)/12), "lng": 8.3 + 0.15 * math.cos(2*math.pi*k/1000) * (0.6 + 0.4*((k*7919) % 13)/12)} for k in range(1000)]
heavy = {"area_of_interest": {"volume": {"outline_polygon": {"vertices": star}, **alt}, "time_start": t(0), "time_end": t(7200)}}
cheap = {"area_of_interest": {"volume": {"outline_circle": {"center": {"lat": 47.05, "lng": 8.05}, "radius": {"value": 100, "units": "M"}}, **alt}, "time_start": t(0), "time_end": t(7200)}}
def lat_of(body):
    t0 = time.time(); s = req("POST", "/dss/v1/operational_intent_references/query", body); return (time.time() - t0) * 1000, s
def cheap_run(n):
    out = [lat_of(cheap) for _ in range(n)]
    return sorted(x for x, _ in out)
alone = cheap_run(300)
h0 = time.time(); h = lat_of(heavy); print(f"one heavy query alone: {h[0]:.0f} ms (status {h[1]})")
stop = False; heavy_lat = []
def heavy_loop():
    while not stop: heavy_lat.append(lat_of(heavy)[0])
ths = [threading.Thread(target=heavy_loop) for _ in range(4)]
for th in ths: th.start()
time.sleep(0.5)
beside = cheap_run(300)
stop = True
for th in ths: th.join()
q = lambda v, f: v[min(len(v)-1, int(f*len(v)))]
print(f"cheap query alone: p50 {q(alone,.5):.2f} ms, p99 {q(alone,.99):.2f} ms, max {alone[-1]:.2f} ms")
print(f"cheap query beside 4 heavy: p50 {q(beside,.5):.2f} ms, p99 {q(beside,.99):.2f} ms, max {beside[-1]:.2f} ms; heavy queries answered {len(heavy_lat)}, p50 {statistics.median(heavy_lat):.0f} ms")
p.terminate(); p.wait()
