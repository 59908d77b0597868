//! The end-to-end suite's access to the real control plane started by
//! `scripts/start-cluster.sh` (KUBECONFIG, kubectl on PATH): namespaces per
//! scenario, the chart installed with the real Helm engine, operator processes
//! authenticated with the chart's ServiceAccount token, and the API server's
//! audit log to count what they wrote.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shopstream_testkit::ChildGuard;

/// The cluster under test.
pub struct Cluster {
    pub kubeconfig: PathBuf,
    pub server: String,
    pub ca_file: String,
    pub audit_log: PathBuf,
}

pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let kubeconfig = PathBuf::from(std::env::var("KUBECONFIG").unwrap_or_else(|_| {
            panic!(
                "KUBECONFIG is not set: start the local control plane with \
                 `eval \"$(scripts/start-cluster.sh)\"` (scripts/test.sh does)"
            )
        }));
        let view = kubectl_json(&["config", "view", "--raw", "--minify"]);
        let c = &view["clusters"][0]["cluster"];
        let audit_log = std::env::var("SHOPSTREAM_TEST_AUDIT_LOG")
            .map(PathBuf::from)
            .unwrap_or_else(|_| kubeconfig.parent().unwrap().join("logs/audit.log"));
        Cluster {
            server: c["server"].as_str().expect("server in kubeconfig").to_string(),
            ca_file: c["certificate-authority"]
                .as_str()
                .expect("certificate-authority file in kubeconfig")
                .to_string(),
            kubeconfig,
            audit_log,
        }
    })
}

/// `kubectl ARGS` as cluster-admin (the test's own setup and checks).
pub fn kubectl(args: &[&str]) -> Output {
    kubectl_stdin(args, None)
}

pub fn kubectl_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl on PATH (eval \"$(scripts/start-cluster.sh)\" puts it there)");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write to kubectl");
    }
    child.wait_with_output().expect("kubectl ran")
}

/// `kubectl ARGS`, which must succeed; its stdout.
pub fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(
        out.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn kubectl_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&kubectl_ok(&all)).expect("kubectl printed JSON")
}

/// The object, or None when it does not exist.
pub fn get(kind: &str, ns: &str, name: &str) -> Option<Value> {
    let out = kubectl(&["get", kind, name, "-n", ns, "-o", "json", "--ignore-not-found"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    (!text.trim().is_empty()).then(|| serde_json::from_str(&text).expect("JSON"))
}

/// `kubectl apply -f -` of `yaml` (server-side, so fields are owned as a user's would be).
pub fn apply(ns: &str, yaml: &str) -> Output {
    kubectl_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "e2e-user",
            "-n",
            ns,
            "-f",
            "-",
        ],
        Some(yaml),
    )
}

pub fn apply_ok(ns: &str, yaml: &str) {
    let out = apply(ns, yaml);
    assert!(
        out.status.success(),
        "kubectl apply failed: {}\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kubectl patch` of a Pipeline with a JSON merge patch, as a user edits it.
pub fn patch_pipeline(ns: &str, name: &str, merge: &str) {
    kubectl_ok(&["patch", "spl", name, "-n", ns, "--type=merge", "-p", merge]);
}

/// Poll `probe` every 250 ms until it gives a value; panics after `timeout`
/// with `what` and the last thing seen.
pub fn wait_for<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(seen) if Instant::now() >= deadline => {
                panic!("{what}: not within {timeout:?}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// A DNS-label name unique to this test run.
pub fn dns_unique(prefix: &str) -> String {
    let id = uuid_like();
    format!("{prefix}-{id}")
}

fn uuid_like() -> String {
    shopstream_testkit::unique("x")
        .trim_start_matches("x_")
        .chars()
        .take(8)
        .collect()
}

/// A namespace of its own per scenario, deleted (without waiting) on drop.
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    pub fn new(prefix: &str) -> Self {
        cluster();
        let name = dns_unique(prefix);
        kubectl_ok(&["create", "namespace", &name]);
        Self { name }
    }

    /// The warehouse Secret every Pipeline names: the test database. The
    /// workers never run here (kwok plays their pods); the operator uses it
    /// when a deletion clears the topic's stored offsets.
    pub fn with_warehouse_secret(self) -> Self {
        kubectl_ok(&[
            "create",
            "secret",
            "generic",
            "warehouse",
            "-n",
            &self.name,
            &format!("--from-literal=url={}", shopstream_testkit::database_url()),
        ]);
        self
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = kubectl(&[
            "delete",
            "namespace",
            &self.name,
            "--wait=false",
            "--ignore-not-found",
        ]);
    }
}

/// Run the chart through the real Helm engine (charts/tests/helm_release.py).
pub fn helm(action: &str, release: &str, ns: &str, values: &Value) -> Value {
    let python = std::env::var("SHOPSTREAM_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/tests/helm_release.py");
    let out = Command::new(&python)
        .args([script, action, release, ns, &values.to_string()])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} (set SHOPSTREAM_TEST_PYTHON to the chart venv): {e}")
        });
    assert!(
        out.status.success(),
        "helm {action} {release} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if action != "uninstall" {
        // Helm returns once the CRD is created; the API serves it once Established.
        kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd/pipelines.shopstream.dev",
            "--timeout=60s",
        ]);
    }
    serde_json::from_slice(&out.stdout).expect("helm_release printed JSON")
}

/// The chart, installed once per suite run with leader election on: its
/// ClusterRole and ServiceAccount are what every scenario's operator runs as.
pub struct Release {
    pub name: String,
    pub namespace: String,
    pub service_account: String,
}

impl Release {
    pub fn user(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}

pub fn shared_release() -> &'static Release {
    static RELEASE: OnceLock<Release> = OnceLock::new();
    RELEASE.get_or_init(|| {
        // Unique per run: the ClusterRole is cluster-wide. The chart's fullname
        // is the release name when that contains "shopstream".
        let name = dns_unique("shopstream-e2e");
        let namespace = dns_unique("shopstream-system");
        helm(
            "install",
            &name,
            &namespace,
            &json!({"leaderElection": {"enabled": true}}),
        );
        Release {
            service_account: name.clone(),
            name,
            namespace,
        }
    })
}

/// A kubeconfig that authenticates as `sa` by a token from the TokenRequest
/// API (`kubectl create token`): the real RBAC authorizer judges every call
/// made with it.
pub fn token_kubeconfig(namespace: &str, sa: &str, dir: &Path) -> PathBuf {
    let c = cluster();
    let token = kubectl_ok(&["create", "token", sa, "-n", namespace, "--duration", "2h"]);
    let path = dir.join(format!("{sa}.kubeconfig"));
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{}\", certificate-authority: \"{}\"}}\n\
         users:\n- name: u\n  user: {{token: \"{}\"}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
        c.server,
        c.ca_file,
        token.trim()
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// How to run one `shopstream-operator run` process.
pub struct OperatorArgs<'a> {
    pub release: &'a Release,
    /// Watch only this namespace (scenarios share the ClusterRole, never Pipelines).
    pub watch_namespace: Option<&'a str>,
    pub scale_interval: &'a str,
    /// `Some(lease name)`: run with --leader-election.
    pub lease: Option<&'a str>,
    pub identity: &'a str,
    /// `--cleanup-timeout` (the binary's default when `None`).
    pub cleanup_timeout: Option<&'a str>,
}

impl<'a> OperatorArgs<'a> {
    pub fn scoped(release: &'a Release, ns: &'a str) -> Self {
        Self {
            release,
            watch_namespace: Some(ns),
            scale_interval: "2s",
            lease: None,
            identity: "e2e-operator",
            cleanup_timeout: None,
        }
    }
}

/// An operator process on this machine, as the chart's ServiceAccount.
pub struct Operator {
    pub process: ChildGuard,
    pub metrics_addr: String,
    pub dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Operator {
    pub fn start(args: &OperatorArgs<'_>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let kc = token_kubeconfig(&args.release.namespace, &args.release.service_account, dir.path());
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("operator.log")).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shopstream-operator"));
        cmd.env("KUBECONFIG", &kc)
            .env("POD_NAMESPACE", &args.release.namespace)
            .env("POD_NAME", args.identity)
            .env("RUST_LOG", "info,kube=warn")
            .args(["run", "--metrics-addr", &metrics_addr])
            .args(["--scale-interval", args.scale_interval, "--kafka-timeout", "5s"])
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(ns) = args.watch_namespace {
            cmd.args(["--watch-namespace", ns]);
        }
        if let Some(t) = args.cleanup_timeout {
            cmd.args(["--cleanup-timeout", t]);
        }
        if let Some(lease) = args.lease {
            cmd.args([
                "--leader-election",
                "--lease-name",
                lease,
                "--lease-duration",
                "6s",
            ]);
        }
        let process = ChildGuard::spawn("shopstream-operator", &mut cmd);
        let op = Self {
            process,
            metrics_addr,
            dir,
        };
        wait_for(Duration::from_secs(30), "operator serving /healthz", || {
            shopstream_testkit::http_get(&op.metrics_addr, "/healthz")
                .map(|_| ())
                .ok_or_else(|| op.log_tail())
        });
        op
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("operator.log")).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Sum of a counter (every label set) on the operator's /metrics.
    pub fn counter(&self, name: &str) -> f64 {
        let text = shopstream_testkit::http_get(&self.metrics_addr, "/metrics").unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn reconciles(&self) -> f64 {
        self.counter("shopstream_operator_reconciles_total")
    }

    /// The operator never logged an authorization failure or a failed reconcile.
    pub fn assert_clean_log(&self) {
        self.assert_clean_log_except(&[]);
    }

    /// Same, ignoring lines that contain any of `expected`.
    pub fn assert_clean_log_except(&self, expected: &[&str]) {
        for line in self.log().lines() {
            if expected.iter().any(|e| line.contains(e)) {
                continue;
            }
            for bad in ["forbidden", "Forbidden", "reconcile failed", "ERROR"] {
                assert!(
                    !line.contains(bad),
                    "operator log has `{bad}`: {line}\n{}",
                    self.log_tail()
                );
            }
        }
    }
}

/// One request in the API server's audit log.
#[derive(Debug, Clone)]
pub struct Audited {
    pub at: DateTime<Utc>,
    pub user: String,
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub code: i64,
}

impl Audited {
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

/// Requests by `user` in `namespace` since `since`, from the audit log.
pub fn audited(user: &str, namespace: &str, since: DateTime<Utc>) -> Vec<Audited> {
    let text = std::fs::read_to_string(&cluster().audit_log).expect("read the API server's audit log");
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["stage"] == "ResponseComplete" && e["user"]["username"] == user)
        .filter(|e| e["objectRef"]["namespace"] == namespace)
        .filter_map(|e| {
            let at = DateTime::parse_from_rfc3339(e["requestReceivedTimestamp"].as_str()?)
                .ok()?
                .with_timezone(&Utc);
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            Some(Audited {
                at,
                user: s(&e["user"]["username"]),
                verb: s(&e["verb"]),
                resource: s(&e["objectRef"]["resource"]),
                subresource: s(&e["objectRef"]["subresource"]),
                namespace: s(&e["objectRef"]["namespace"]),
                name: s(&e["objectRef"]["name"]),
                code: e["responseStatus"]["code"].as_i64().unwrap_or_default(),
            })
        })
        .filter(|a| a.at >= since)
        .collect()
}

/// A condition of an object: (status, reason, message).
pub fn condition(obj: &Value, type_: &str) -> Option<(String, String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("status"), s("reason"), s("message"))
        })
}

/// Wait until Pipeline `name` is Ready=True; returns it.
pub fn wait_ready(ns: &str, name: &str, op: &Operator) -> Value {
    wait_for(
        Duration::from_secs(90),
        &format!("Pipeline {ns}/{name} Ready"),
        || {
            let p = get("pipeline", ns, name).ok_or("no Pipeline")?;
            match condition(&p, "Ready") {
                Some((s, _, _)) if s == "True" => Ok(p),
                other => Err(format!("{other:?}; operator log:\n{}", op.log_tail())),
            }
        },
    )
}

/// Wait until Pipeline `name` is Ready, its scaler holds, and every Deployment
/// in `ns` has rolled out completely with no pod on its way out: nothing is
/// left that should make anyone write.
pub fn wait_settled(ns: &str, name: &str, op: &Operator) -> Value {
    wait_for(Duration::from_secs(90), &format!("{ns}/{name} settled"), || {
        let p = get("pipeline", ns, name).ok_or("no Pipeline")?;
        let ready = condition(&p, "Ready").map(|c| c.0);
        let scaling = condition(&p, "Scaling").map(|c| c.1);
        if ready.as_deref() != Some("True") || matches!(scaling.as_deref(), Some("ScalingUp" | "ScalingDown"))
        {
            return Err(format!("Ready {ready:?}, Scaling {scaling:?}; {}", op.log_tail()));
        }
        for d in kubectl_json(&["get", "deployments", "-n", ns])["items"]
            .as_array()
            .unwrap()
        {
            let (spec, status) = (&d["spec"], &d["status"]);
            let want = spec["replicas"].as_i64().unwrap_or(1);
            let n = |k: &str| status[k].as_i64().unwrap_or(0);
            if d["metadata"]["generation"] != status["observedGeneration"]
                || [
                    n("replicas"),
                    n("updatedReplicas"),
                    n("readyReplicas"),
                    n("availableReplicas"),
                ] != [want; 4]
            {
                return Err(format!("{} rolling out: {status}", d["metadata"]["name"]));
            }
        }
        let pods = kubectl_json(&["get", "pods", "-n", ns]);
        if let Some(p) = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| !p["metadata"]["deletionTimestamp"].is_null())
        {
            return Err(format!("pod {} terminating", p["metadata"]["name"]));
        }
        Ok(p)
    })
}

/// `spec.replicas` and `status.readyReplicas` of a Deployment.
pub fn replicas(ns: &str, name: &str) -> Option<(i64, i64)> {
    let d = get("deployment", ns, name)?;
    Some((
        d["spec"]["replicas"].as_i64().unwrap_or(0),
        d["status"]["readyReplicas"].as_i64().unwrap_or(0),
    ))
}

/// A minimal valid Pipeline on the test broker, with `extra` YAML merged into spec.
pub fn pipeline_yaml(name: &str, topic: &str, spec_extra: &str) -> String {
    format!(
        "apiVersion: shopstream.dev/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}}}\nspec:\n  \
         kafka: {{bootstrapServers: \"{brokers}\", topic: {topic}, partitions: 2, deleteTopicOnDelete: true}}\n  \
         warehouse: {{connectionSecretRef: {{name: warehouse, key: url}}, schema: shop}}\n{spec_extra}",
        brokers = shopstream_testkit::brokers()
    )
}

/// Partitions of a topic on the test broker (None: no such topic).
pub fn topic_partitions(topic: &str) -> Option<i32> {
    let admin = shopstream_common::topics::TopicAdmin::new(
        &shopstream_common::kafka::KafkaArgs::plaintext(shopstream_testkit::brokers()),
        Duration::from_secs(10),
    )
    .expect("admin client");
    admin.partitions(topic).expect("topic metadata")
}

/// Simulated nodes (kwok plays them) with `labels`, `cpu` each, optionally
/// tainted (`key=value:Effect`); deleted on drop.
pub struct Nodes {
    pub names: Vec<String>,
}

impl Nodes {
    pub fn add(labels: &[(&str, &str)], count: usize, cpu: &str, taint: Option<&str>) -> Self {
        let names: Vec<String> = (0..count).map(|_| dns_unique("kwok-e2e")).collect();
        Self::add_named(&names, labels, cpu, taint);
        Self { names }
    }

    pub fn grow(&mut self, labels: &[(&str, &str)], count: usize, cpu: &str, taint: Option<&str>) {
        let names: Vec<String> = (0..count).map(|_| dns_unique("kwok-e2e")).collect();
        Self::add_named(&names, labels, cpu, taint);
        self.names.extend(names);
    }

    fn add_named(names: &[String], labels: &[(&str, &str)], cpu: &str, taint: Option<&str>) {
        for name in names {
            let mut l = serde_json::Map::new();
            l.insert("type".into(), json!("kwok"));
            l.insert("kubernetes.io/hostname".into(), json!(name));
            for (k, v) in labels {
                l.insert((*k).into(), json!(v));
            }
            let taints: Vec<Value> = taint
                .map(|t| {
                    let (kv, effect) = t.split_once(':').expect("key=value:Effect");
                    let (k, v) = kv.split_once('=').expect("key=value");
                    json!({"key": k, "value": v, "effect": effect})
                })
                .into_iter()
                .collect();
            let resources = json!({"cpu": cpu, "memory": "16Gi", "pods": "110"});
            let node = json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"}, "labels": l},
                "spec": {"taints": taints},
                "status": {"allocatable": resources, "capacity": resources},
            });
            let out = kubectl_stdin(&["apply", "-f", "-"], Some(&node.to_string()));
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        for name in names {
            kubectl_ok(&[
                "wait",
                "--for=condition=Ready",
                &format!("node/{name}"),
                "--timeout=60s",
            ]);
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = kubectl(&["delete", "node", name, "--wait=false", "--ignore-not-found"]);
        }
    }
}
