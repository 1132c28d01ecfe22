#!/usr/bin/env python3
"""Checks deploy/ against the binary it deploys: every flag and DECONFLICT_ variable in the
compose file is one the command takes (its --help lists it), every etcd flag is etcd's, the
services it names and the volumes it mounts exist, published ports stay on loopback, the
files the Containerfiles copy exist (or are made by scripts/build-images.sh), and the systemd
example's TOML file is one `deconflict dss --config` accepts.

Usage: scripts/check-deploy.py path/to/deconflict
"""
import os
import re
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = sys.argv[1]
problems = []
helps = {}


def help_of(command):
    if command not in helps:
        helps[command] = subprocess.run([binary, command, "--help"], capture_output=True, text=True, check=True).stdout
    return helps[command]


def takes(command, flag):
    return re.search(r"(^|\s)" + re.escape(flag) + r"([\s=,]|$)", help_of(command), re.M) is not None


compose = yaml.safe_load(open(os.path.join(ROOT, "deploy", "compose.yaml")))
services = compose["services"]
volumes = set((compose.get("volumes") or {}).keys())
etcd_help = subprocess.run(["etcd", "--help"], capture_output=True, text=True).stdout if shutil.which("etcd") else None
for name, svc in services.items():
    image = svc.get("image", "")
    if not image.startswith("localhost/deconflict"):
        problems.append(f"{name}: image {image!r} is not one scripts/build-images.sh builds")
    for dep in svc.get("depends_on", []):
        if dep not in services:
            problems.append(f"{name}: depends on unknown service {dep}")
    for mount in svc.get("volumes", []):
        if mount.split(":")[0] not in volumes:
            problems.append(f"{name}: mounts undeclared volume {mount}")
    for port in svc.get("ports", []):
        if not port.startswith("127.0.0.1:"):
            problems.append(f"{name}: port {port} is published beyond loopback")
    command = svc.get("command", [])
    if image == "localhost/deconflict-etcd:latest":
        if etcd_help is not None:
            for flag in (w for w in command if w.startswith("--")):
                if flag not in etcd_help:
                    problems.append(f"{name}: etcd has no {flag}")
        continue
    sub = command[0]
    for flag in (w.split("=")[0] for w in command[1:] if w.startswith("--")):
        if not takes(sub, flag):
            problems.append(f"{name}: `deconflict {sub}` has no {flag}")
    for var in svc.get("environment", {}):
        flag = "--" + var.removeprefix("DECONFLICT_").lower().replace("_", "-")
        if not var.startswith("DECONFLICT_") or not takes(sub, flag):
            problems.append(f"{name}: {var} names no flag of `deconflict {sub}` ({flag})")

for containerfile in ["Containerfile", "Containerfile.etcd"]:
    for line in open(os.path.join(ROOT, "deploy", containerfile)):
        if line.startswith("COPY"):
            source = [w for w in line.split()[1:] if not w.startswith("--")][0]
            made = source.startswith("deploy/rootfs")
            if not made and not os.path.exists(os.path.join(ROOT, source)):
                problems.append(f"{containerfile}: copies missing {source}")

toml = os.path.join(ROOT, "deploy", "systemd", "dss.toml")
checked = subprocess.run([binary, "dss", "--config", toml, "--help"], capture_output=True, text=True)
if checked.returncode != 0:
    problems.append(f"deploy/systemd/dss.toml: {checked.stderr.strip()}")
unit = open(os.path.join(ROOT, "deploy", "systemd", "deconflict-dss.service")).read()
if "dss --config /etc/deconflict/dss.toml" not in unit:
    problems.append("deconflict-dss.service does not start `dss --config /etc/deconflict/dss.toml`")

for p in problems:
    print("deploy:", p, file=sys.stderr)
print(f"deploy/: {len(services)} services, {len(problems)} problems")
sys.exit(1 if problems else 0)
