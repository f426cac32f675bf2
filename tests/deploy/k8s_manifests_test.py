#!/usr/bin/env python3
"""Checks deploy/k8s against the binaries it runs.

Parses every YAML document under deploy/k8s and checks what would break a deployment: each
container's image is one of the three server images (deploy/images/NAME.Dockerfile, whose
ENTRYPOINT is that binary); every flag in its args is one the binary's real --help lists, and
its required flags are given; $(VAR)s resolve to the ConfigMap or env; the listen and metrics
ports are container ports, the Dockerfile EXPOSEs them, the Services target them, the probes
hit /healthz and /readyz on the metrics port and the prometheus.io annotations name it;
--dir is a persistent volume (the StatefulSets) or an emptyDir (workers, never the
container's overlay root); every file a flag names is in a mounted Secret key made by
make-secrets.sh (run here on certificates from deploy/make-certs.sh) or written by the init
container; --max-size fits its volume; the scheduler is a single replica; workers are
privileged; the autoscaler targets the worker Deployment on farm_scheduler_queued_tasks.
Every failure is listed; the test fails if there is any.
"""
import base64
import os
import re
import subprocess
import sys
import tempfile

import yaml

SERVERS = ("farm-cache", "farm-scheduler", "farm-worker")
failures = []


def fail(msg):
    failures.append(msg)


def runfile(path):
    base = os.environ.get("TEST_SRCDIR")
    if base:
        return os.path.join(base, os.environ.get("TEST_WORKSPACE", "farm"), path)
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", path)


BINARIES = {
    "farm-cache": "cache/server/farm-cache",
    "farm-scheduler": "scheduler/server/farm-scheduler",
    "farm-worker": "worker/agent/farm-worker",
}
FLAG_RE = re.compile(r"^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)", re.M)


def help_of(cmd):
    """(flags, required flags, text) from a program's --help."""
    p = subprocess.run(cmd + ["--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=60)
    text = p.stdout
    flags = set(FLAG_RE.findall(text))
    required = set()
    m = re.search(r"^Usage:\s*(.*)$", text, re.M)
    if m:
        usage = re.sub(r"\[[^\]]*\]", "", m.group(1))  # optional parts out
        required = set(re.findall(r"--([a-z0-9-]+)", usage))
    if not flags:
        fail(f"{' '.join(cmd)} --help listed no flags (exit {p.returncode}):\n{text}")
    return flags, required, text


def parse_port(addr, what):
    m = re.fullmatch(r"(.*):(\d+)", addr)
    if not m:
        fail(f"{what}: {addr!r} is not HOST:PORT")
        return None
    return int(m.group(2))


def size_bytes(s):
    """'180G' (farm's sizes: powers of 1024 or 1000 are close enough) or '200Gi'."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTP]?)(i?)B?", str(s))
    if not m:
        return None
    mult = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}[m.group(2)]
    return float(m.group(1)) * (1024 if m.group(3) else 1000) ** mult


def main():
    k8s = runfile("deploy/k8s")
    images_dir = runfile("deploy/images")

    # --- every document ---------------------------------------------------------------
    docs = []  # (file, doc)
    for root, _, files in os.walk(k8s):
        for f in sorted(files):
            if not f.endswith((".yaml", ".yml")):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, k8s)
            try:
                with open(path) as fh:
                    for d in yaml.safe_load_all(fh):
                        if d is not None:
                            docs.append((rel, d))
            except yaml.YAMLError as e:
                fail(f"{rel}: not YAML: {e}")
    if not docs:
        fail(f"no YAML documents under {k8s}")
    for rel, d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            fail(f"{rel}: a document without kind/apiVersion")
            continue
        if d["kind"] == "Kustomization":
            continue
        name = d.get("metadata", {}).get("name")
        if not name:
            fail(f"{rel}: {d['kind']} without metadata.name")
        if d["kind"] != "Namespace" and d.get("metadata", {}).get("namespace") != "farm":
            fail(f"{rel}: {d['kind']} {name} is not in namespace farm")

    def by_kind(kind):
        return [(rel, d) for rel, d in docs if d.get("kind") == kind]

    # --- kustomization: lists every base manifest, names only our images ----------------
    kust = by_kind("Kustomization")
    if len(kust) != 1:
        fail(f"want one kustomization.yaml, found {len(kust)}")
    else:
        resources = kust[0][1].get("resources", [])
        for r in resources:
            if not os.path.exists(os.path.join(k8s, r)):
                fail(f"kustomization.yaml lists {r}, which does not exist")
        for rel in sorted({rel for rel, d in docs if d.get("kind") != "Kustomization"}):
            if "/" not in rel and rel not in resources:
                fail(f"kustomization.yaml does not list {rel}")
        for img in kust[0][1].get("images", []):
            if img.get("name") not in SERVERS:
                fail(f"kustomization.yaml sets image {img.get('name')}, not one of {SERVERS}")

    configmaps = {d["metadata"]["name"]: d.get("data", {}) for _, d in by_kind("ConfigMap")}

    # --- the Secrets make-secrets.sh makes from deploy/make-certs.sh's files ------------
    secrets = {}
    with tempfile.TemporaryDirectory() as tmp:
        tls = os.path.join(tmp, "tls")
        p = subprocess.run(
            ["bash", runfile("deploy/make-certs.sh"), "--dir", tls,
             "--server", "farm-cache=farm-cache.farm.svc,farm-cache.farm.svc.cluster.local",
             "--server",
             "farm-scheduler=farm-scheduler.farm.svc,farm-scheduler.farm.svc.cluster.local",
             "--client", "farm-scheduler"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        if p.returncode != 0:
            fail(f"make-certs.sh failed:\n{p.stdout}")
        token = os.path.join(tmp, "scheduler-cache.token")
        with open(token, "w") as fh:
            fh.write("eyJ0eXAiOiJKV1QifQ.e30.c2ln\n")
        docker_config = os.path.join(tmp, "config.json")
        with open(docker_config, "w") as fh:
            fh.write('{"auths": {}}\n')
        p = subprocess.run(
            ["bash", os.path.join(k8s, "make-secrets.sh"), "--tls-dir", tls,
             "--scheduler-token", token, "--docker-config", docker_config],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        if p.returncode != 0:
            fail(f"make-secrets.sh failed: {p.stderr}")
        else:
            for d in yaml.safe_load_all(p.stdout):
                if not d:
                    continue
                if d.get("kind") != "Secret" or d["metadata"].get("namespace") != "farm":
                    fail(f"make-secrets.sh printed a {d.get('kind')} outside namespace farm")
                    continue
                data = {k: base64.b64decode(v) for k, v in d.get("data", {}).items()}
                secrets[d["metadata"]["name"]] = data
            for name, data in secrets.items():
                for key, value in data.items():
                    if key.endswith((".crt", ".pub")) and b"-----BEGIN" not in value:
                        fail(f"Secret {name} key {key} is not PEM")
                    if key.endswith(".key") and b"PRIVATE KEY" not in value:
                        fail(f"Secret {name} key {key} is not a private key")
    if not secrets:
        fail("make-secrets.sh made no Secrets")

    # --- the binaries' flags -----------------------------------------------------------
    helps = {}
    for name, path in BINARIES.items():
        if not os.environ.get("TEST_SRCDIR"):  # run by hand: bazel-bin's
            path = os.path.join("bazel-bin", path)
        helps[name] = help_of([runfile(path)])
    make_certs_flags, _, _ = help_of(["bash", runfile("deploy/make-certs.sh")])

    # --- Dockerfiles: ENTRYPOINT and EXPOSE ---------------------------------------------
    exposed = {}
    for name in SERVERS:
        path = os.path.join(images_dir, name + ".Dockerfile")
        if not os.path.exists(path):
            fail(f"deploy/images/{name}.Dockerfile is missing")
            continue
        text = open(path).read()
        if f'ENTRYPOINT ["/usr/local/bin/{name}"]' not in text:
            fail(f"deploy/images/{name}.Dockerfile: ENTRYPOINT is not /usr/local/bin/{name}")
        exposed[name] = {int(p) for line in re.findall(r"^EXPOSE (.*)$", text, re.M)
                         for p in line.split()}

    # --- workloads -----------------------------------------------------------------------
    workloads = {}
    for kind in ("StatefulSet", "Deployment", "DaemonSet"):
        for rel, d in by_kind(kind):
            workloads[d["metadata"]["name"]] = (rel, d)
    want_kinds = {"farm-cache": ("StatefulSet",), "farm-scheduler": ("StatefulSet",),
                  "farm-worker": ("Deployment", "DaemonSet")}
    for name, kinds in want_kinds.items():
        if name not in workloads:
            fail(f"no workload named {name}")
        elif workloads[name][1]["kind"] not in kinds:
            fail(f"{name} is a {workloads[name][1]['kind']}, want {' or '.join(kinds)}")
    if "farm-scheduler" in workloads and workloads["farm-scheduler"][1]["spec"].get("replicas") != 1:
        fail("farm-scheduler must have exactly 1 replica (it owns the queue and the leases)")
    if "farm-cache" in workloads and workloads["farm-cache"][1]["spec"].get("replicas") != 1:
        fail("farm-cache must have 1 replica per volume")

    checked_containers = 0
    listen_ports = {}  # server -> {"grpc": port, "metrics": port}
    for wname, (rel, w) in workloads.items():
        where = f"{rel}: {w['kind']} {wname}"
        pod = w["spec"]["template"]
        if w["spec"].get("selector", {}).get("matchLabels", {}).items() - \
                pod["metadata"].get("labels", {}).items():
            fail(f"{where}: selector does not match the pod labels")
        spec = pod["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {c["metadata"]["name"]: c for c in w["spec"].get("volumeClaimTemplates", [])}
        annotations = pod["metadata"].get("annotations", {})
        init_scripts = "\n".join(" ".join(c.get("command", []) + c.get("args", []))
                                 for c in spec.get("initContainers", []))
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            is_init = c in spec.get("initContainers", [])
            cwhere = f"{where} container {c['name']}"
            image = c.get("image", "")
            repo = image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]
            if repo not in SERVERS:
                fail(f"{cwhere}: image {image!r} is not one of {SERVERS}")
                continue
            checked_containers += 1
            # What $(VAR) can name.
            env = {e["name"] for e in c.get("env", [])}
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("configMapKeyRef")
                if ref and ref["key"] not in configmaps.get(ref["name"], {}):
                    fail(f"{cwhere}: env {e['name']} names ConfigMap {ref['name']} key "
                         f"{ref['key']}, which does not exist")
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["key"] not in secrets.get(ref["name"], {}) and not ref.get("optional"):
                    fail(f"{cwhere}: env {e['name']} names Secret {ref['name']} key "
                         f"{ref['key']}, which make-secrets.sh does not make")
            for ef in c.get("envFrom", []):
                cm = ef.get("configMapRef", {}).get("name")
                if cm is not None:
                    if cm not in configmaps:
                        fail(f"{cwhere}: envFrom names ConfigMap {cm}, which does not exist")
                    env |= set(configmaps.get(cm, {}))
            mounts = {}
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes and m["name"] not in claims:
                    fail(f"{cwhere}: mounts {m['name']}, which is neither a volume nor a claim")
                mounts[m["mountPath"]] = m["name"]

            def expand(value):
                def sub(m):
                    if m.group(1) not in env:
                        fail(f"{cwhere}: $({m.group(1)}) is not defined (env, envFrom)")
                        return ""
                    for cm in configmaps.values():
                        if m.group(1) in cm:
                            return str(cm[m.group(1)])
                    return ""
                return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, value)

            def check_file(path, flag):
                """A file a flag names: in a mounted Secret key, or written by init."""
                mount = max((mp for mp in mounts if path.startswith(mp.rstrip("/") + "/")),
                            key=len, default=None)
                if mount is None:
                    fail(f"{cwhere}: {flag}={path} is not under any volume mount")
                    return
                vol = volumes.get(mounts[mount], {})
                key = path[len(mount.rstrip("/")) + 1:]
                if "secret" in vol:
                    sec = vol["secret"]
                    items = sec.get("items")
                    if items is not None:
                        paths = {i["path"]: i["key"] for i in items}
                        if key not in paths:
                            fail(f"{cwhere}: {flag}={path}: Secret volume {mounts[mount]} "
                                 f"projects only {sorted(paths)}")
                            return
                        key = paths[key]
                    name = sec["secretName"]
                    if name not in secrets:
                        if not sec.get("optional"):
                            fail(f"{cwhere}: {flag}={path}: Secret {name} is not one "
                                 f"make-secrets.sh makes")
                    elif key not in secrets[name]:
                        fail(f"{cwhere}: {flag}={path}: Secret {name} has no key {key} "
                             f"(it has {sorted(secrets[name])})")
                elif "emptyDir" in vol:
                    if path not in init_scripts and key not in init_scripts:
                        fail(f"{cwhere}: {flag}={path} is on emptyDir {mounts[mount]}, "
                             f"which no init container writes it to")
                else:
                    fail(f"{cwhere}: {flag}={path} is on volume {mounts[mount]}, neither a "
                         f"Secret nor an init container's emptyDir")

            # The init container runs farm-make-certs in a shell script: check its flags.
            if c.get("command"):
                script = " ".join(c.get("command", []) + c.get("args", []))
                if "farm-make-certs" in script:
                    for call in re.findall(r"farm-make-certs([^\n;&|]*)", script):
                        for flag in re.findall(r"(?:^|\s)--([a-z0-9-]+)", call):
                            if flag not in make_certs_flags:
                                fail(f"{cwhere}: farm-make-certs has no --{flag}")
                    for var in re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", script):
                        if var not in env and var not in ("d",):
                            fail(f"{cwhere}: the script uses ${var}, not in its env")
                    for m in c.get("volumeMounts", []):
                        vol = volumes.get(m["name"], {})
                        if "secret" in vol:
                            name = vol["secret"]["secretName"]
                            for key in re.findall(re.escape(m["mountPath"]) + r"/([\w.-]+)",
                                                  script):
                                if key not in secrets.get(name, {}):
                                    fail(f"{cwhere}: reads {m['mountPath']}/{key}: Secret "
                                         f"{name} has no key {key}")
                elif not is_init:
                    fail(f"{cwhere}: overrides the image's ENTRYPOINT with {c['command']}")
                continue

            flags, required, helptext = helps[repo]
            given = {}
            for arg in c.get("args", []):
                m = re.fullmatch(r"--([a-z0-9][a-z0-9-]*)(?:=(.*))?", arg, re.S)
                if not m:
                    fail(f"{cwhere}: argument {arg!r} is not --flag or --flag=value")
                    continue
                flag, value = m.group(1), m.group(2)
                if flag not in flags:
                    fail(f"{cwhere}: {repo} has no flag --{flag} (its --help lists "
                         f"{', '.join('--' + f for f in sorted(flags))})")
                given[flag] = expand(value) if value is not None else None
            for flag in sorted(required - set(given)):
                fail(f"{cwhere}: {repo} requires --{flag}, not given")

            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for p in ports.values():
                if repo in exposed and p not in exposed[repo]:
                    fail(f"{cwhere}: container port {p} is not EXPOSEd by {repo}.Dockerfile")
            lp = listen_ports.setdefault(repo, {})
            if repo != "farm-worker":
                port = parse_port(given.get("listen") or "", f"{cwhere} --listen")
                if port != ports.get("grpc"):
                    fail(f"{cwhere}: --listen port {port} is not the container port 'grpc' "
                         f"({ports.get('grpc')})")
                lp["grpc"] = port
                if not (given.get("listen") or "").startswith("0.0.0.0:"):
                    fail(f"{cwhere}: --listen must bind 0.0.0.0 to be reachable in the pod")
            mport = parse_port(given.get("metrics-listen") or "", f"{cwhere} --metrics-listen")
            lp["metrics"] = mport
            if mport != ports.get("metrics"):
                fail(f"{cwhere}: --metrics-listen port {mport} is not the container port "
                     f"'metrics' ({ports.get('metrics')})")
            if not (given.get("metrics-listen") or "").startswith("0.0.0.0:"):
                fail(f"{cwhere}: --metrics-listen must bind 0.0.0.0 (kubelet and Prometheus)")
            if annotations.get("prometheus.io/scrape") != "true":
                fail(f"{where}: no prometheus.io/scrape: \"true\" annotation")
            if str(annotations.get("prometheus.io/port")) != str(mport):
                fail(f"{where}: prometheus.io/port {annotations.get('prometheus.io/port')} is "
                     f"not the metrics port {mport}")
            if annotations.get("prometheus.io/path", "/metrics") != "/metrics":
                fail(f"{where}: prometheus.io/path is not /metrics")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                                ("startupProbe", "/healthz")):
                pr = c.get(probe)
                if pr is None:
                    if probe != "startupProbe":
                        fail(f"{cwhere}: no {probe}")
                    continue
                if "httpGet" in pr:
                    hp = pr["httpGet"]
                    pport = ports.get(hp["port"], hp["port"])
                    if pport != mport:
                        fail(f"{cwhere}: {probe} port {hp['port']} is not the metrics port")
                    if hp.get("path") != path:
                        fail(f"{cwhere}: {probe} path {hp.get('path')}, want {path}")
                elif "grpc" in pr:
                    if pr["grpc"]["port"] != lp.get("grpc"):
                        fail(f"{cwhere}: {probe} grpc port is not --listen's")
                else:
                    fail(f"{cwhere}: {probe} is neither httpGet nor grpc")

            # --dir: persistent for the StatefulSets, an emptyDir for workers; never the
            # container's own file system.
            d = given.get("dir")
            if d is None:
                fail(f"{cwhere}: no --dir")
            elif d not in mounts:
                fail(f"{cwhere}: --dir {d} is not a volume mount (the container's root is "
                     f"overlayfs and is lost with the container)")
            else:
                vname = mounts[d]
                if w["kind"] == "StatefulSet":
                    if vname not in claims:
                        fail(f"{cwhere}: --dir {d} is not on a volumeClaimTemplate")
                    else:
                        storage = claims[vname]["spec"]["resources"]["requests"]["storage"]
                        ms = given.get("max-size")
                        if repo == "farm-cache":
                            if not ms:
                                fail(f"{cwhere}: no --max-size (the volume's size is the limit)")
                            elif size_bytes(ms) is None or size_bytes(ms) >= size_bytes(storage):
                                fail(f"{cwhere}: --max-size {ms} does not fit the volume "
                                     f"({storage})")
                elif "emptyDir" not in volumes.get(vname, {}):
                    fail(f"{cwhere}: --dir {d} is not an emptyDir")
                else:
                    limit = volumes[vname]["emptyDir"].get("sizeLimit")
                    lsm = given.get("layer-store-max")
                    if lsm and limit and size_bytes(lsm) >= size_bytes(limit):
                        fail(f"{cwhere}: --layer-store-max {lsm} does not fit the emptyDir "
                             f"({limit})")
            for flag, value in given.items():
                if value and value.startswith("/etc/") and flag != "dir":
                    if flag == "docker-config":
                        if value not in mounts:
                            fail(f"{cwhere}: --docker-config {value} is not mounted")
                        continue
                    check_file(value, "--" + flag)
            if repo == "farm-worker":
                if not c.get("securityContext", {}).get("privileged"):
                    fail(f"{cwhere}: farm-worker needs a privileged container (sandbox)")
            else:
                if c.get("securityContext", {}).get("privileged"):
                    fail(f"{cwhere}: {repo} must not be privileged")
                if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
                    fail(f"{where}: {repo} should run as non-root (runAsNonRoot)")
    if checked_containers < 3:
        fail(f"checked only {checked_containers} containers")

    # --- Services ---------------------------------------------------------------------
    services = {d["metadata"]["name"]: d for _, d in by_kind("Service")}
    for sname, s in services.items():
        sel = s["spec"].get("selector", {})
        match = [w for w in workloads.values()
                 if sel and sel.items() <= w[1]["spec"]["template"]["metadata"]
                 .get("labels", {}).items()]
        if len(match) != 1:
            fail(f"Service {sname}: selector {sel} matches {len(match)} workloads")
            continue
        cports = {p.get("name"): p["containerPort"]
                  for c in match[0][1]["spec"]["template"]["spec"]["containers"]
                  for p in c.get("ports", [])}
        for p in s["spec"]["ports"]:
            t = p.get("targetPort", p["port"])
            if (t not in cports) if isinstance(t, str) else (t not in cports.values()):
                fail(f"Service {sname} port {p['port']}: targetPort {t} is no container port")
    cm = configmaps.get("farm-config", {})
    for key, server in (("FARM_CACHE_ADDR", "farm-cache"),
                        ("FARM_SCHEDULER_ADDR", "farm-scheduler")):
        addr = cm.get(key, "")
        m = re.fullmatch(r"([a-z0-9-]+)\.farm\.svc(?:\.cluster\.local)?:(\d+)", addr)
        if not m:
            fail(f"ConfigMap farm-config {key}={addr!r} is not SERVICE.farm.svc:PORT")
            continue
        s = services.get(m.group(1))
        if s is None:
            fail(f"{key}={addr}: no Service {m.group(1)}")
            continue
        sp = [p for p in s["spec"]["ports"] if p["port"] == int(m.group(2))]
        if not sp:
            fail(f"{key}={addr}: Service {m.group(1)} has no port {m.group(2)}")
        elif listen_ports.get(server, {}).get("grpc") not in (sp[0].get("targetPort"),) and \
                sp[0].get("targetPort") != "grpc":
            fail(f"{key}={addr}: Service port does not reach {server}'s --listen")

    # --- autoscaling --------------------------------------------------------------------
    scalers = by_kind("ScaledObject") + by_kind("HorizontalPodAutoscaler")
    if not scalers:
        fail("no autoscaling rule (ScaledObject or HorizontalPodAutoscaler)")
    slots = cm.get("FARM_WORKER_SLOTS")
    for rel, d in scalers:
        ref = d["spec"]["scaleTargetRef"]
        target = workloads.get(ref["name"])
        if not target or target[1]["kind"] != ref.get("kind", "Deployment"):
            fail(f"{rel}: scaleTargetRef {ref} is not a workload here")
        text = yaml.safe_dump(d)
        if "farm_scheduler_queued_tasks" not in text:
            fail(f"{rel}: does not scale on farm_scheduler_queued_tasks")
        thresholds = [t["metadata"].get("threshold") for t in d["spec"].get("triggers", [])] + \
            [m["external"]["target"].get("averageValue")
             for m in d["spec"].get("metrics", []) if m.get("type") == "External"]
        for t in thresholds:
            if str(t) != str(slots):
                fail(f"{rel}: threshold {t} is not FARM_WORKER_SLOTS ({slots})")

    if failures:
        print(f"{len(failures)} problems in deploy/k8s:", file=sys.stderr)
        for f in failures:
            print("FAIL: " + f, file=sys.stderr)
        if any("no flag --metrics-listen" in f or "no flag --log-format" in f for f in failures):
            print("(--metrics-listen and --log-format are issue 16's observability flags: "
                  "these failures mean the binaries do not have them yet)", file=sys.stderr)
        return 1
    print(f"deploy/k8s: {len(docs)} documents, {checked_containers} containers, "
          f"{len(secrets)} secrets checked; all consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
