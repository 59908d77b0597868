"""Checks of the Helm chart, rendered with the real Helm engine (helm-python-sdk).

- default values and every optional feature render, lint clean, and every
  object validates against the Kubernetes OpenAPI schemas (kubernetes-validate);
- values.schema.json rejects bad values;
- every pod meets the restricted Pod Security Standard;
- the RBAC rules are exactly those in rbac-rules.json (operator/tests/cluster runs
  the operator with them against the real RBAC authorizer);
- the chart's CRD is the generated one;
- the Grafana dashboard ships as a sidecar ConfigMap, is well formed, and only
  reads warehouse tables the migrations create (dashboard/tests/grafana.rs runs
  its SQL against a real warehouse).
"""

import json
import pathlib
import re

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "shopstream"
KUBE_VERSION = "1.33.0"
RELEASE, NAMESPACE = "shopstream", "shopstream-system"

ALL_ON = {
    "replicaCount": 2,
    "leaderElection": {"enabled": True, "leaseDuration": "20s"},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": {"kubernetes.io/metadata.name": "monitoring"},
        "egressTo": [{"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 9092, "protocol": "TCP"}]}],
    },
    "examplePipeline": {
        "enabled": True,
        "bootstrapServers": "kafka.kafka:9092",
        "schema": "shop",
        "readerSecret": {"name": "warehouse-reader", "key": "url"},
        "migratorSecret": {"name": "warehouse-owner", "key": "url"},
        "caSecret": {"name": "warehouse-ca", "key": "ca.crt"},
        "dashboard": {"enabled": True, "authTokenSecret": {"name": "dashboard-token", "key": "token"}},
    },
    "imagePullSecrets": [{"name": "registry"}],
    "nodeSelector": {"pool": "system"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}],
    "podAnnotations": {"example.com/owner": "data-platform"},
    "grafanaDashboard": {"enabled": True, "namespace": "monitoring", "annotations": {"grafana_folder": "Shopstream"}},
}
SCOPED = {"watchNamespace": "team-a"}


def render(values):
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs, manifests


def kinds(docs):
    return sorted(d["kind"] for d in docs)


@pytest.mark.parametrize("values", [{}, ALL_ON, SCOPED], ids=["defaults", "all-features", "watch-namespace"])
def test_renders_lints_and_validates_against_the_kubernetes_schemas(values):
    docs, manifests = render(values)
    assert any(p.endswith("NOTES.txt") and "Next steps" in t for p, t in manifests.items())
    report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE_VERSION}")
    errors = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
    assert not errors, errors
    crd = yaml.safe_load((ROOT / "crds" / "pipeline.yaml").read_text())
    pipeline_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for doc in docs:
        if doc["kind"] == "Pipeline":
            jsonschema.validate(doc, pipeline_schema)
        elif doc["kind"] == "ServiceMonitor":
            # A Prometheus Operator CRD: check the fields it requires.
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            assert doc["spec"]["endpoints"][0]["port"] == "metrics"
            assert doc["spec"]["selector"]["matchLabels"]
        else:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_defaults_are_minimal_and_features_are_off():
    docs, _ = render({})
    assert kinds(docs) == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]
    env = {e["name"] for e in docs_of(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "SHOPSTREAM_LEADER_ELECTION" not in env


def test_every_optional_feature_renders():
    docs, _ = render(ALL_ON)
    assert kinds(docs) == [
        "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "NetworkPolicy", "Pipeline",
        "Role", "RoleBinding", "Service", "ServiceAccount", "ServiceMonitor",
    ]
    deployment = docs_of(docs, "Deployment")[0]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SHOPSTREAM_LEADER_ELECTION"] == "true"
    assert env["SHOPSTREAM_LEASE_DURATION"] == "20s"
    assert deployment["spec"]["replicas"] == 2


def test_the_example_pipeline_takes_the_least_privilege_secrets():
    docs, _ = render(ALL_ON)
    spec = docs_of(docs, "Pipeline")[0]["spec"]
    assert spec["warehouse"]["readerSecretRef"] == {"name": "warehouse-reader", "key": "url"}
    assert spec["warehouse"]["migratorSecretRef"] == {"name": "warehouse-owner", "key": "url"}
    assert spec["warehouse"]["caSecretRef"] == {"name": "warehouse-ca", "key": "ca.crt"}
    assert spec["dashboard"] == {"enabled": True, "authTokenSecretRef": {"name": "dashboard-token", "key": "token"}}
    minimal = {"examplePipeline": {"enabled": True}}
    spec = docs_of(render(minimal)[0], "Pipeline")[0]["spec"]
    assert set(spec["warehouse"]) == {"connectionSecretRef", "schema"}
    assert "dashboard" not in spec


def test_more_than_one_replica_turns_leader_election_on():
    docs, _ = render({"replicaCount": 3})
    assert "Role" in kinds(docs)
    env = {e["name"] for e in docs_of(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "SHOPSTREAM_LEADER_ELECTION" in env


def test_a_watch_namespace_gets_a_role_not_a_cluster_role():
    docs, _ = render(SCOPED)
    assert "ClusterRole" not in kinds(docs) and "ClusterRoleBinding" not in kinds(docs)
    role = docs_of(docs, "Role")[0]
    assert role["metadata"]["namespace"] == "team-a"
    binding = docs_of(docs, "RoleBinding")[0]
    assert binding["subjects"][0]["namespace"] == NAMESPACE
    env = {e["name"]: e.get("value") for e in docs_of(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SHOPSTREAM_WATCH_NAMESPACE"] == "team-a"


BAD_VALUES = [
    ("unknown top-level key", {"replicas": 2}),
    ("zero replicas", {"replicaCount": 0}),
    ("pull policy", {"image": {"repository": "x", "pullPolicy": "Sometimes"}}),
    ("empty repository", {"image": {"repository": ""}}),
    ("namespace name", {"watchNamespace": "Team_A"}),
    ("duration", {"leaderElection": {"leaseDuration": "fifteen"}}),
    ("concurrency", {"operator": {"concurrency": 0}}),
    ("log format", {"operator": {"logFormat": "xml"}}),
    ("metrics port", {"metrics": {"port": 80}}),
    ("service type", {"metrics": {"service": {"type": "Ingress"}}}),
    ("schema name", {"examplePipeline": {"schema": "Shop-DB"}}),
    ("typo in a nested key", {"networkPolicy": {"enable": True}}),
    ("dashboard label value", {"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}),
    ("dashboard namespace", {"grafanaDashboard": {"namespace": "Monitoring"}}),
]


@pytest.mark.parametrize("name,values", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_the_values_schema_rejects_bad_values(name, values):
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmError):
            chart.validate_schema(values)


def docs_of(docs, kind):
    return [d for d in docs if d["kind"] == kind]


ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


def restricted_violations(pod):
    """The restricted Pod Security Standard (Kubernetes 1.33) checks."""
    bad = []
    psc = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            bad.append(key)
    for v in pod.get("volumes", []):
        kind = next(k for k in v if k != "name")
        if kind not in ALLOWED_VOLUMES:
            bad.append(f"volume type {kind}")
    if psc.get("runAsUser") == 0:
        bad.append("pod runs as UID 0")
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            bad.append(f"{name}: must drop ALL capabilities")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: adds capabilities")
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            bad.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser") == 0:
            bad.append(f"{name}: runs as UID 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            bad.append(f"{name}: hostPort")
        if sc.get("readOnlyRootFilesystem") is not True:
            bad.append(f"{name}: readOnlyRootFilesystem (our own rule)")
    return bad


@pytest.mark.parametrize("values", [{}, ALL_ON, SCOPED], ids=["defaults", "all-features", "watch-namespace"])
def test_pods_meet_the_restricted_pod_security_standard(values):
    docs, _ = render(values)
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]
    assert pods
    for pod in pods:
        assert restricted_violations(pod) == []


def test_the_restricted_checker_catches_violations():
    pod = {"hostNetwork": True, "containers": [{"name": "c", "securityContext": {"privileged": True}}],
           "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}
    problems = restricted_violations(pod)
    assert "hostNetwork" in problems and "volume type hostPath" in problems
    assert any("privileged" in p for p in problems) and any("ALL" in p for p in problems)


def rules_of(doc):
    out = {}
    for r in doc["rules"]:
        for group in r["apiGroups"]:
            for resource in r["resources"]:
                out[(group, resource)] = sorted(r["verbs"])
    return out


def expected_rules(part):
    rules = json.loads((CHART / "rbac-rules.json").read_text())[part]
    return {(r["apiGroup"], r["resource"]): sorted(r["verbs"]) for r in rules}


@pytest.mark.parametrize("values", [{}, ALL_ON, SCOPED], ids=["defaults", "all-features", "watch-namespace"])
def test_rbac_grants_exactly_the_operators_calls(values):
    docs, _ = render(values)
    main = [d for d in docs if d["kind"] in ("ClusterRole", "Role") and not d["metadata"]["name"].endswith("-leader")]
    assert len(main) == 1
    assert rules_of(main[0]) == expected_rules("operator")
    leader = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-leader")]
    if values.get("replicaCount", 1) > 1 or values.get("leaderElection", {}).get("enabled"):
        assert rules_of(leader[0]) == expected_rules("leaderElection")
        assert leader[0]["metadata"]["namespace"] == NAMESPACE
    else:
        assert leader == [], "no Lease rights without leader election"
    # Nothing broader than needed: no wildcards, no secrets listing.
    for doc in main + leader:
        for r in doc["rules"]:
            assert "*" not in r["verbs"] and "*" not in r["resources"]
    assert "list" not in rules_of(main[0]).get(("", "secrets"), [])


def test_the_chart_crd_is_the_generated_crd():
    assert (CHART / "crds" / "pipeline.yaml").read_bytes() == (ROOT / "crds" / "pipeline.yaml").read_bytes(), (
        "copy crds/pipeline.yaml to charts/shopstream/crds/pipeline.yaml"
    )


DASHBOARD = CHART / "dashboards" / "shopstream.json"


def warehouse_tables():
    """Tables, views and the functions panels read from (migration 0011's
    filter functions) that the worker's migrations create."""
    sql = "".join(p.read_text() for p in sorted((ROOT / "worker" / "migrations").glob("*.sql")))
    return set(re.findall(r"CREATE (?:OR REPLACE )?(?:TABLE|VIEW|FUNCTION) \{schema\}\.(\w+)", sql))


def test_the_grafana_dashboard_ships_as_a_sidecar_config_map():
    docs, _ = render(ALL_ON)
    cm = docs_of(docs, "ConfigMap")[0]
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"]["grafana_folder"] == "Shopstream"
    assert json.loads(cm["data"]["shopstream.json"]) == json.loads(DASHBOARD.read_text())
    defaults, _ = render({"grafanaDashboard": {"enabled": True}})
    assert docs_of(defaults, "ConfigMap")[0]["metadata"]["namespace"] == NAMESPACE


def panels_of(dashboard):
    for p in dashboard["panels"]:
        yield p
        yield from p.get("panels", [])


def test_the_grafana_dashboard_is_well_formed_and_reads_only_warehouse_tables():
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "grafana-postgresql-datasource"
    assert "agg_sales_minute" in variables["schema"]["query"]
    tables = warehouse_tables()
    assert {"agg_sales_minute", "agg_product", "fact_sales", "dead_letter"} <= tables
    panels = [p for p in panels_of(dash) if p["type"] != "row"]
    titles = {p["title"] for p in panels}
    # The same four areas as the built-in dashboard.
    assert {"Revenue", "Orders", "Average order value", "Top products", "Funnel",
            "New vs returning customers", "Revenue by country", "Dead letters (last hour)"} <= titles
    assert len({p["id"] for p in panels}) == len(panels), "panel ids are unique"
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        for t in p["targets"]:
            sql = t["rawSql"]
            used = re.findall(r"(\$\{schema:raw\}|\w+)\.(\w+)", sql)
            qualified = [table for prefix, table in used if prefix == "${schema:raw}"]
            assert qualified, f"{p['title']}: reads no warehouse table"
            assert set(qualified) <= tables, f"{p['title']}: unknown tables {set(qualified) - tables}"
            # A bare table name would read whatever search_path finds.
            bare = {m.group(1) for m in re.finditer(r"\b(?:FROM|JOIN)\s+(\w+)\b(?!\.)", sql, re.I)}
            assert not bare & tables, f"{p['title']}: unqualified {bare & tables}"


def test_the_dashboard_network_policy_example_admits_only_the_proxy_and_scrapers():
    doc = yaml.safe_load((ROOT / "examples" / "dashboard-networkpolicy.yaml").read_text())
    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    # The labels the operator gives the dashboard pods of Pipeline `shop`
    # (operator/src/builders.rs, selector_labels), and their one port.
    dashboard_pod = {
        "app.kubernetes.io/name": "shopstream",
        "app.kubernetes.io/instance": "shop",
        "app.kubernetes.io/component": "dashboard",
    }
    selector = doc["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= dashboard_pod.items()
    (rule,) = doc["spec"]["ingress"]
    assert rule["ports"] == [{"port": 9100, "protocol": "TCP"}]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "oauth2-proxy"}}} in rule["from"]
