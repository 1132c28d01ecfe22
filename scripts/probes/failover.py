#!/usr/bin/env python3
"""Failover probe: the longest stall of writes through a pool instance when another DSS process
(`dss`) or the etcd leader (`leader`) is killed. Starts `deconflict pool --members 3
--etcd-read-leases` (LEASES=0 for quorum reads) in /tmp/fo, loopback only, 14 s. Needs etcd.
Usage: scripts/probes/failover.py target/release/deconflict dss|leader"""
# Measures the longest write stall through a pool instance when another DSS process or the etcd
# leader is killed (read leases on). Usage: failover.py <deconflict binary> <dss|leader>
import json, os, signal, subprocess, sys, time, urllib.request, uuid, threading, datetime
binary, fault = sys.argv[1], sys.argv[2]
d = f"/tmp/fo/pool-{fault}"
os.makedirs("/tmp/fo", exist_ok=True)
subprocess.run(["rm", "-rf", d]); os.makedirs(d)
pool = subprocess.Popen([binary, "pool", "--members", "3", "--dir", d] + (["--etcd-read-leases"] if os.environ.get("LEASES", "1") == "1" else []), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
dss, etcd = [], []
while len(dss) < 3:
    line = pool.stdout.readline()
    if " DSS " in line and "etcd member " in line:
        dss.append(line.split(" DSS ")[1].split()[0]); etcd.append(line.split("etcd member ")[1].strip())
tok = subprocess.run([binary, "token", "--sub", "fo", "--scope", "utm.strategic_coordination", "--audience", "localhost"], capture_output=True, text=True).stdout.strip()
def status(u):
    r = urllib.request.urlopen(urllib.request.Request(u + "/v3/maintenance/status", data=b"{}", method="POST"), timeout=2)
    return json.load(r)
def leader():
    for _ in range(50):
        ids, lead = [], None
        for u in etcd:
            try:
                s = status(u); ids.append(s["header"]["member_id"]); lead = s.get("leader") or lead
            except Exception: ids.append(None)
        if lead in ids: return ids.index(lead)
        time.sleep(0.1)
def t(off):
    return {"value": (datetime.datetime.utcnow() + datetime.timedelta(seconds=off)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "format": "RFC3339"}
def write(url, k):
    lat, lng = 40.0 + (k // 1000) * 0.01, 8.0 + (k % 1000) * 0.01
    body = {"extents": [{"volume": {"outline_circle": {"center": {"lat": lat, "lng": lng}, "radius": {"value": 50, "units": "M"}}, "altitude_lower": {"value": 0, "reference": "W84", "units": "M"}, "altitude_upper": {"value": 100, "reference": "W84", "units": "M"}}, "time_start": t(60), "time_end": t(900)}], "key": [], "state": "Accepted", "uss_base_url": "http://uss.test"}
    req = urllib.request.Request(f"{url}/dss/v1/operational_intent_references/{uuid.uuid4()}", data=json.dumps(body).encode(), method="PUT", headers={"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(req, timeout=20).status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:
        return 0
time.sleep(2)
L = leader()
if fault == "dss":
    victim_dss = (L + 1) % 3; writer = (L + 2) % 3
else:
    writer = (L + 1) % 3
ok_times = []
stat_counts = {}
k = 0; start = time.time(); fault_at = None
while time.time() - start < 14:
    if fault_at is None and time.time() - start > 4:
        if fault == "dss":
            # the DSS process of instance victim_dss
            out = subprocess.run(["pgrep", "-f", f"{d}/dss-{victim_dss}"], capture_output=True, text=True).stdout.split()
            for p in out: os.kill(int(p), signal.SIGKILL)
        else:
            out = subprocess.run(["pgrep", "-f", f"{d}/etcd-{L}"], capture_output=True, text=True).stdout.split()
            for p in out: os.kill(int(p), signal.SIGKILL)
        fault_at = time.time()
    t0 = time.time()
    s = write(dss[writer], k); k += 1
    if time.time() - t0 > 0.5: print(f"slow write: started {t0 - (fault_at or 0):.2f} s after the fault, took {time.time() - t0:.2f} s, status {s}")
    stat_counts[s] = stat_counts.get(s, 0) + 1
    if s == 201: ok_times.append(time.time())
gaps = [(b - a) for a, b in zip(ok_times, ok_times[1:]) if b > fault_at] or [float("nan")]
statuses = {}

print(stat_counts)
print(f"{fault}: {len(ok_times)} writes acknowledged of {k}; longest gap between acknowledged writes after the fault: {max(gaps):.2f} s")
pool.send_signal(signal.SIGTERM); pool.wait(timeout=30)
