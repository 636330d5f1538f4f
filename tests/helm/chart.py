#!/usr/bin/env python3
"""The Helm chart, offline: lint, render, validate, write deploy/.

Uses Helm's own Go SDK through helm-python-sdk (no helm binary, no cluster)
and the Kubernetes OpenAPI schemas shipped in kubernetes-validate.

    chart.py lint                         -> JSON lint result
    chart.py render OUT [VALUES.yaml...]   -> one file per template in OUT
    chart.py validate DIR                 -> validates every object in DIR/*.yaml
    chart.py containers DIR               -> JSON: every container of every pod spec
    chart.py wiring DIR                   -> JSON: paths and ports that must agree
    chart.py render-deploy OUT            -> what write-deploy writes, into OUT
    chart.py write-deploy                 -> renders the defaults into deploy/

GLUSTERFS_CSI_CHART=DIR renders another copy of the chart (tests patch one);
GLUSTERFS_CSI_RELEASE_NAMESPACE=NS renders into another release namespace.

deploy/ is the default render without the brick agent token Secret: a token
rendered once would be the same for everyone who applies deploy/, so kubectl
users create the Secret themselves (docs/k3s-hyperconverged.md).
"""

import json
import os
import pathlib
import re
import sys

import helm_python
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = pathlib.Path(os.environ.get("GLUSTERFS_CSI_CHART") or ROOT / "helm" / "glusterfs-csi")
DEPLOY = ROOT / "deploy"
RELEASE = "glusterfs-csi"
NAMESPACE = "glusterfs-csi"
# Oldest and newest Kubernetes schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ["1.25", "1.37"]
# Rendered by the chart, left out of deploy/ (see above).
NOT_DEPLOYED = ["22-brick-agent-token.yaml"]


def render(values_files):
    values = {}
    for path in values_files:
        values = merge(values, yaml.safe_load(pathlib.Path(path).read_text()) or {})
    chart = helm_python.Chart.load(str(CHART))
    namespace = os.environ.get("GLUSTERFS_CSI_RELEASE_NAMESPACE") or NAMESPACE
    rendered = chart.render(values, name=RELEASE, namespace=namespace)
    return {
        pathlib.Path(template).name: text.strip() + "\n"
        for template, text in rendered.items()
        if template.endswith(".yaml") and text.strip()
    }


# deploy/ is applied with kubectl, which needs the namespace as an object;
# the chart itself installs into the release namespace and never owns it.
DEPLOY_NAMESPACE = f"""# The namespace deploy/ installs into (Helm installs use the release
# namespace instead: helm install -n {NAMESPACE} --create-namespace).
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    # The node plugin is privileged (FUSE mounts, mount propagation).
    pod-security.kubernetes.io/enforce: privileged
"""


def render_deploy():
    rendered = {name: text for name, text in render([]).items() if name not in NOT_DEPLOYED}
    return {"00-namespace.yaml": DEPLOY_NAMESPACE, **rendered}


def merge(base, override):
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def documents(directory):
    for path in sorted(pathlib.Path(directory).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.name, doc


def validate(directory):
    problems = []
    count = 0
    docs = list(documents(directory))
    for name, doc in docs:
        count += 1
        if doc.get("apiVersion") in CUSTOM_RESOURCES:
            # kubernetes-validate has no schemas for CRD kinds: checked here.
            check = CUSTOM_RESOURCES[doc["apiVersion"]].get(doc.get("kind"))
            if not check:
                problems.append(f"{name}: no check for {doc['apiVersion']} {doc.get('kind')}")
                continue
            problems.extend(f"{name}: {doc['kind']} {doc['metadata']['name']}: {p}" for p in check(doc, [d for _, d in docs]))
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{name}: {doc['kind']} {doc['metadata']['name']} (k8s {version}): {e.message}")
    return {"objects": count, "problems": problems}


DURATION = re.compile(r"^([0-9]+(ms|s|m|h))+$")


def only_keys(what, mapping, allowed):
    if not isinstance(mapping, dict):
        return [f"{what} is not a mapping"]
    return [f"{what}.{key} is not a field the check knows" for key in mapping if key not in allowed]


def service_monitor_problems(doc, docs):
    """The fields of monitoring.coreos.com/v1 ServiceMonitor the chart uses,
    and that it selects a Service of this render by labels, in its
    namespace, and scrapes a port that Service names."""
    problems = only_keys("", doc, {"apiVersion", "kind", "metadata", "spec"})
    metadata = doc.get("metadata", {})
    problems += only_keys("metadata", metadata, {"name", "namespace", "labels"})
    spec = doc.get("spec", {})
    problems += only_keys("spec", spec, {"selector", "namespaceSelector", "endpoints"})
    wanted = spec.get("selector", {}).get("matchLabels", {})
    namespaces = spec.get("namespaceSelector", {}).get("matchNames", [metadata.get("namespace")])
    services = [
        d for d in docs
        if d["kind"] == "Service"
        and d["metadata"]["namespace"] in namespaces
        and wanted
        and all(d["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
    ]
    if not services:
        problems.append(f"selects no Service of this render ({wanted} in {namespaces})")
    port_names = {p.get("name") for svc in services for p in svc["spec"].get("ports", [])}
    endpoints = spec.get("endpoints") or []
    if not endpoints:
        problems.append("no endpoints")
    for i, endpoint in enumerate(endpoints):
        where = f"spec.endpoints[{i}]"
        problems += only_keys(where, endpoint, {"port", "path", "interval", "scrapeTimeout", "relabelings"})
        if endpoint.get("port") not in port_names:
            problems.append(f"{where}.port {endpoint.get('port')} is no port of {[s['metadata']['name'] for s in services]}")
        if not str(endpoint.get("path", "/metrics")).startswith("/"):
            problems.append(f"{where}.path is not absolute")
        for key in ("interval", "scrapeTimeout"):
            if key in endpoint and not DURATION.match(str(endpoint[key])):
                problems.append(f"{where}.{key} {endpoint[key]!r} is not a Prometheus duration")
        for j, relabel in enumerate(endpoint.get("relabelings", [])):
            problems += only_keys(f"{where}.relabelings[{j}]", relabel, {"sourceLabels", "targetLabel", "action", "regex", "replacement"})
            if not relabel.get("targetLabel"):
                problems.append(f"{where}.relabelings[{j}] has no targetLabel")
    return problems


# Kinds of CustomResourceDefinitions the chart may render, by API version.
CUSTOM_RESOURCES = {"monitoring.coreos.com/v1": {"ServiceMonitor": service_monitor_problems}}


def containers(directory):
    found = []
    for name, doc in documents(directory):
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec") or (spec if doc["kind"] == "Pod" else None)
        if not pod:
            continue
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            found.append(
                {
                    "file": name,
                    "workload": f"{doc['kind']}/{doc['metadata']['name']}",
                    "container": container["name"],
                    "image": container["image"],
                    "args": container.get("args", []),
                    "command": container.get("command", []),
                    "env": [e["name"] for e in container.get("env", [])],
                    "probes": [
                        container[kind]["exec"]["command"]
                        for kind in ("livenessProbe", "readinessProbe", "startupProbe")
                        if "exec" in container.get(kind, {})
                    ],
                }
            )
    return found


def flag(args, name):
    prefix = f"--{name}="
    return next((a[len(prefix):] for a in args if a.startswith(prefix)), None)


def mounted(container, volumes, path):
    """The volume mounted at (or above) `path` in `container`, if any."""
    best = None
    for mount in container.get("volumeMounts", []):
        mount_path = mount["mountPath"].rstrip("/")
        if path == mount_path or path.startswith(mount_path + "/"):
            if best is None or len(mount_path) > len(best[0]["mountPath"]):
                best = (mount, volumes.get(mount["name"]))
    return best


def env_of(container, name):
    return next((e for e in container.get("env", []) if e["name"] == name), None)


def wiring(directory):
    """What a kubelet would only find out on a node: sockets, mounts and
    ports that must line up between containers, volumes and flags."""
    problems = []
    token_secrets = {}
    driver_names = {doc["metadata"]["name"] for _, doc in documents(directory) if doc["kind"] == "CSIDriver"}
    storage_classes = [doc for _, doc in documents(directory) if doc["kind"] == "StorageClass"]
    for sc in storage_classes:
        if sc["provisioner"] not in driver_names:
            problems.append(f"StorageClass {sc['metadata']['name']}: provisioner {sc['provisioner']} is no CSIDriver")
    for _, doc in documents(directory):
        if doc["kind"] not in ("Deployment", "DaemonSet"):
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        pod = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        containers = {c["name"]: c for c in pod["containers"]}
        for c in pod["containers"]:
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    problems.append(f"{where}/{c['name']}: mounts undefined volume {m['name']}")
        driver = containers["glusterfs-csi"]
        args = driver["args"]
        endpoint = flag(args, "endpoint")
        socket = endpoint.removeprefix("unix://")
        socket_volume = mounted(driver, volumes, socket)
        if not socket_volume:
            problems.append(f"{where}: CSI socket {socket} is on no volume")
        for name, c in containers.items():
            address = flag(c.get("args", []), "csi-address")
            if address and mounted(c, volumes, address) is None:
                problems.append(f"{where}/{name}: --csi-address {address} is on no volume")
            elif address and mounted(c, volumes, address)[1] != socket_volume[1]:
                problems.append(f"{where}/{name}: --csi-address is not the driver's socket volume")
        ports = {p["name"]: p["containerPort"] for p in driver.get("ports", [])}
        if len(set(ports.values())) != len(ports):
            problems.append(f"{where}: the driver's ports share a number: {ports}")
        metrics = flag(args, "metrics-listen")
        if (int(metrics.rsplit(":", 1)[1]) if metrics else None) != ports.get("metrics"):
            problems.append(f"{where}: --metrics-listen {metrics} is not the metrics port {ports.get('metrics')}")
        probe = containers.get("liveness-probe")
        health = flag(probe["args"], "http-endpoint") if probe else None
        if not health or int(health.rsplit(":", 1)[1]) != ports.get("healthz"):
            problems.append(f"{where}: livenessprobe listens on {health}, probes go to {ports.get('healthz')}")
        if driver.get("readinessProbe", {}).get("httpGet", {}).get("port") != "healthz":
            problems.append(f"{where}: readinessProbe is not wired to the healthz port (the CSI Probe)")
        ping = driver.get("livenessProbe", {}).get("exec", {}).get("command", [])
        if ping[:2] != ["/usr/bin/glusterfs-csi", "ping"] or flag(ping, "endpoint") != endpoint:
            problems.append(f"{where}: livenessProbe is not `glusterfs-csi ping` on the driver's endpoint {endpoint}: {ping}")
        agent = flag(args, "brick-agent-listen") or env_of(driver, "GLUSTERFS_CSI_BRICK_AGENT_LISTEN")
        token = env_of(driver, "GLUSTERFS_CSI_BRICK_AGENT_TOKEN")
        if token:
            ref = token.get("valueFrom", {}).get("secretKeyRef", {})
            if not ref or ref.get("optional"):
                problems.append(f"{where}: the brick agent token is not a required Secret key")
            token_secrets[where] = ref.get("name")
        elif agent or (doc["kind"] == "Deployment" and (flag(args, "brick-cleanup") or "agent") == "agent"):
            problems.append(f"{where}: no brick agent token (it refuses to start without one)")
        glusterd_socket = flag(args, "glusterd-socket")
        if glusterd_socket and (agent or flag(args, "glusterd-access") == "socket"):
            found = mounted(driver, volumes, glusterd_socket)
            if not found or "hostPath" not in (found[1] or {}):
                problems.append(f"{where}: --glusterd-socket {glusterd_socket} is on no host path")
            elif found[0]["mountPath"] == glusterd_socket:
                problems.append(f"{where}: mounts the glusterd socket file itself: a restarted glusterd's new socket would never show")
        log_dir = flag(args, "mount-log-dir")
        if log_dir:
            found = mounted(driver, volumes, log_dir + "/x")
            if not found or "hostPath" not in (found[1] or {}):
                problems.append(f"{where}: --mount-log-dir {log_dir} is not on a host path")
        if flag(args, "glusterd-access") == "ssh" or flag(args, "brick-cleanup") == "ssh":
            for key in ("ssh-identity", "ssh-known-hosts"):
                found = mounted(driver, volumes, flag(args, key))
                if not found or "secret" not in (found[1] or {}):
                    problems.append(f"{where}: --{key} is not on a Secret volume")
        if doc["kind"] == "DaemonSet":
            registrar = containers["node-driver-registrar"]
            registration = flag(registrar["args"], "kubelet-registration-path")
            plugin_dir = socket_volume[1]["hostPath"]["path"] if socket_volume else None
            if registration != f"{plugin_dir}/{socket.rsplit('/', 1)[1]}":
                problems.append(f"{where}: kubelet registration path {registration} is not the socket's host path {plugin_dir}")
            if not any(driver_name in registration for driver_name in driver_names):
                problems.append(f"{where}: registration path names no CSIDriver")
            kubelet = next((m for m in driver["volumeMounts"] if m.get("mountPropagation") == "Bidirectional"), None)
            if not kubelet or not registration.startswith(kubelet["mountPath"] + "/"):
                problems.append(f"{where}: the kubelet directory is not mounted Bidirectional")
            elif flag(args, "kubelet-dir") != kubelet["mountPath"]:
                problems.append(f"{where}: --kubelet-dir {flag(args, 'kubelet-dir')} is not the kubelet directory {kubelet['mountPath']}")
            if not driver.get("securityContext", {}).get("privileged"):
                problems.append(f"{where}: the node plugin must be privileged to mount")
            mounter = flag(args, "mounter") or "auto"
            if mounter != "inline" and not pod.get("hostPID"):
                problems.append(f"{where}: --mounter {mounter} needs hostPID (FUSE clients die with the pod's PID namespace)")
            state = flag(args, "state-dir") or "/csi/state"
            found = mounted(driver, volumes, state + "/x")
            if not found or "hostPath" not in (found[1] or {}):
                problems.append(f"{where}: --state-dir {state} is not on a host path (dead mounts could not be healed after a restart)")
            if mounter in ("auto", "cgroup"):
                root = flag(args, "cgroup-root") or "/sys/fs/cgroup"
                found = mounted(driver, volumes, root)
                if not found or (found[1] or {}).get("hostPath", {}).get("path") != "/sys/fs/cgroup" or found[0]["mountPath"] != root:
                    problems.append(f"{where}: --cgroup-root {root} is not the host's /sys/fs/cgroup")
            if mounter in ("auto", "systemd"):
                found = mounted(driver, volumes, "/run/systemd/private")
                if not found or (found[1] or {}).get("hostPath", {}).get("path") != "/run/systemd":
                    problems.append(f"{where}: --mounter {mounter} needs the host's /run/systemd (systemd's private socket)")
            if agent:
                for sc in storage_classes:
                    root = sc.get("parameters", {}).get("brickRoot")
                    if root and not mounted(driver, volumes, root + "/x"):
                        problems.append(f"{where}: brickRoot {root} of {sc['metadata']['name']} is not mounted for the agent")
                listen = env_of(driver, "GLUSTERFS_CSI_BRICK_AGENT_LISTEN")
                if listen and not pod.get("hostNetwork"):
                    problems.append(f"{where}: the agent listens on the node's address without host networking")
                for mount in driver.get("volumeMounts", []):
                    source = (volumes.get(mount["name"]) or {}).get("hostPath", {})
                    if mount["name"].startswith("brick-root-") and source.get("type") != "Directory":
                        problems.append(f"{where}: brick root {source.get('path')} would be created if missing (hostPath type {source.get('type')}, not Directory)")
    if len(set(token_secrets.values())) > 1:
        problems.append(f"the brick agent token comes from different Secrets: {token_secrets}")
    problems.extend(tls_wiring(directory))
    problems.extend(leader_wiring(directory))
    return problems


def leader_wiring(directory):
    """More than one controller replica only with leader election, which
    needs leases in the namespace it names."""
    docs = [doc for _, doc in documents(directory)]
    problems = []
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        where = f"Deployment/{doc['metadata']['name']}"
        pod = doc["spec"]["template"]["spec"]
        provisioner = next(c for c in pod["containers"] if c["name"] == "csi-provisioner")
        elects = "--leader-election" in provisioner["args"]
        if doc["spec"].get("replicas", 1) > 1 and not elects:
            problems.append(f"{where}: {doc['spec']['replicas']} replicas without --leader-election")
        if not elects:
            continue
        namespace = flag(provisioner["args"], "leader-election-namespace") or doc["metadata"]["namespace"]
        roles = {
            r["metadata"]["name"]
            for r in docs
            if r["kind"] == "Role"
            and r["metadata"]["namespace"] == namespace
            and any("leases" in rule.get("resources", []) and "update" in rule.get("verbs", []) for rule in r["rules"])
        }
        bound = any(
            b["kind"] == "RoleBinding"
            and b["metadata"]["namespace"] == namespace
            and b["roleRef"]["name"] in roles
            and any(sub.get("name") == pod["serviceAccountName"] for sub in b["subjects"])
            for b in docs
        )
        if not bound:
            problems.append(f"{where}: leader election without a Role for leases in {namespace} bound to {pod['serviceAccountName']}")
    return problems


def tls_wiring(directory):
    """With --tls, every node plugin holds a certificate, key and CA where
    the controller names them in the volumes' ssl.* options."""
    workloads = [doc for _, doc in documents(directory) if doc["kind"] in ("Deployment", "DaemonSet")]
    controllers = [doc for doc in workloads if doc["kind"] == "Deployment"]
    args = next(c for c in controllers[0]["spec"]["template"]["spec"]["containers"] if c["name"] == "glusterfs-csi")["args"]
    if "--tls" not in args:
        return []
    tls_dir = flag(args, "tls-dir") or "/etc/glusterfs-csi/tls"
    problems = []
    for doc in workloads:
        if doc["kind"] != "DaemonSet":
            continue
        where = f"DaemonSet/{doc['metadata']['name']}"
        pod = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        driver = next(c for c in pod["containers"] if c["name"] == "glusterfs-csi")
        found = mounted(driver, volumes, tls_dir)
        if not found or found[0]["mountPath"] != tls_dir:
            problems.append(f"{where}: nothing mounted at --tls-dir {tls_dir}")
            continue
        source = found[1] or {}
        if "hostPath" in source:
            if source["hostPath"].get("path") != tls_dir:
                problems.append(f"{where}: {tls_dir} comes from host path {source['hostPath'].get('path')}")
        elif "secret" in source:
            files = sorted(item["path"] for item in source["secret"].get("items", []))
            if files != ["glusterfs.ca", "glusterfs.key", "glusterfs.pem"]:
                problems.append(f"{where}: the TLS Secret gives {files}, not glusterfs.pem/.key/.ca")
        else:
            problems.append(f"{where}: {tls_dir} is neither a host path nor a Secret")
    return problems


def write(directory, files):
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


def main(argv):
    command = argv[1] if len(argv) > 1 else ""
    if command == "lint":
        print(json.dumps(helm_python.lint(str(CHART), strict=True)))
    elif command == "render":
        write(pathlib.Path(argv[2]), render(argv[3:]))
    elif command == "validate":
        print(json.dumps(validate(argv[2])))
    elif command == "containers":
        print(json.dumps(containers(argv[2])))
    elif command == "wiring":
        print(json.dumps(wiring(argv[2])))
    elif command == "render-deploy":
        write(pathlib.Path(argv[2]), render_deploy())
    elif command == "write-deploy":
        for old in DEPLOY.glob("*.yaml"):
            old.unlink()
        write(DEPLOY, render_deploy())
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
