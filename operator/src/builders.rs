//! Desired state as pure functions: a Pipeline in, the generator and worker
//! Deployments out. The Kubernetes runtime applies them; the local runtime
//! translates the same pod specs into processes.

use shopstream_model::envvar;
use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use shopstream_model::Pipeline;
use shopstream_model::pipeline::{KafkaSpec, SecretKeyRef, ShopSpec, WarehouseSpec};

/// Port of every binary's /metrics, /healthz and /readyz.
pub const METRICS_PORT: i32 = 9100;
/// Non-root UID/GID the image runs as (distroless "nonroot").
pub const RUN_AS: i64 = 65532;
pub const MANAGER: &str = "shopstream-operator";
const CA_MOUNT: &str = "/etc/shopstream/kafka-ca";
const CA_FILE: &str = "ca.crt";
const WAREHOUSE_CA_MOUNT: &str = "/etc/shopstream/warehouse-ca";
const TOKEN_MOUNT: &str = "/etc/shopstream/dashboard-token";
const TOKEN_FILE: &str = "token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Generator,
    Worker,
    Dashboard,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Generator => "generator",
            Component::Worker => "worker",
            Component::Dashboard => "dashboard",
        }
    }

    fn binary(self) -> &'static str {
        match self {
            Component::Generator => "shopstream-generator",
            Component::Worker => "shopstream-worker",
            Component::Dashboard => "shopstream-dashboard",
        }
    }
}

pub fn deployment_name(p: &Pipeline, c: Component) -> String {
    format!("{}-{}", p.name_any(), c.as_str())
}

/// Labels identifying one component's pods (the Deployment selector).
pub fn selector_labels(p: &Pipeline, c: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "shopstream".to_string()),
        ("app.kubernetes.io/instance".to_string(), p.name_any()),
        ("app.kubernetes.io/component".to_string(), c.as_str().to_string()),
    ])
}

pub fn labels(p: &Pipeline, c: Component) -> BTreeMap<String, String> {
    let mut l = selector_labels(p, c);
    l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    l.insert("app.kubernetes.io/part-of".into(), "shopstream".into());
    l
}

/// `k=v,k=v`, as the scale subresource and `kubectl -l` want it.
pub fn selector_string(p: &Pipeline, c: Component) -> String {
    selector_labels(p, c)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The consumer group of a pipeline's workers (shared with the worker's default).
pub fn worker_group(p: &Pipeline) -> String {
    shopstream_model::warehouse::default_group(&p.spec.warehouse.schema)
}

fn var(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    }
}

fn pod_name_env() -> EnvVar {
    EnvVar {
        name: envvar::INSTANCE.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }
}

/// Brokers, security protocol, SASL credentials (from the Secret) and CA file.
fn kafka_env(k: &KafkaSpec) -> Vec<EnvVar> {
    let tls = k.tls.as_ref().is_some_and(|t| t.enabled);
    let mut out = vec![
        var(envvar::BROKERS, k.bootstrap_servers.clone()),
        var(envvar::KAFKA_SECURITY_PROTOCOL, k.security_protocol().cli_name()),
    ];
    if let Some(sasl) = &k.sasl {
        out.push(var(envvar::KAFKA_SASL_MECHANISM, sasl.mechanism.as_str()));
        if let Some(creds) = &k.credentials_secret_ref {
            out.push(secret_env(
                envvar::KAFKA_SASL_USERNAME,
                &creds.name,
                &creds.username_key,
            ));
            out.push(secret_env(
                envvar::KAFKA_SASL_PASSWORD,
                &creds.name,
                &creds.password_key,
            ));
        }
    }
    if tls && k.tls.as_ref().is_some_and(|t| t.ca_secret_ref.is_some()) {
        out.push(var(envvar::KAFKA_CA_FILE, format!("{CA_MOUNT}/{CA_FILE}")));
    }
    out
}

/// The Kafka CA bundle Secret, mounted where `SHOPSTREAM_KAFKA_CA_FILE` points.
fn kafka_ca_volume(k: &KafkaSpec) -> Option<(Volume, VolumeMount)> {
    let ca = k.tls.as_ref().filter(|t| t.enabled)?.ca_secret_ref.as_ref()?;
    Some(secret_volume("kafka-ca", ca, CA_MOUNT, CA_FILE))
}

/// The warehouse CA bundle Secret, mounted where `SHOPSTREAM_DATABASE_CA_FILE` points.
fn warehouse_ca_volume(w: &WarehouseSpec) -> Option<(Volume, VolumeMount)> {
    let ca = w.ca_secret_ref.as_ref()?;
    Some(secret_volume("warehouse-ca", ca, WAREHOUSE_CA_MOUNT, CA_FILE))
}

/// One key of a Secret as the file `mount/file`, read-only.
fn secret_volume(name: &str, key: &SecretKeyRef, mount: &str, file: &str) -> (Volume, VolumeMount) {
    (
        Volume {
            name: name.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(key.name.clone()),
                items: Some(vec![KeyToPath {
                    key: key.key.clone(),
                    path: file.into(),
                    mode: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeMount {
            name: name.into(),
            mount_path: mount.into(),
            read_only: Some(true),
            ..Default::default()
        },
    )
}

/// The warehouse URL from `role`'s Secret and, when given, the CA file.
fn warehouse_env(w: &WarehouseSpec, role: &SecretKeyRef) -> Vec<EnvVar> {
    let mut out = vec![secret_env(envvar::DATABASE_URL, &role.name, &role.key)];
    if w.ca_secret_ref.is_some() {
        out.push(var(
            envvar::DATABASE_CA_FILE,
            format!("{WAREHOUSE_CA_MOUNT}/{CA_FILE}"),
        ));
    }
    out
}

fn quantity(s: &str) -> Quantity {
    Quantity(s.to_string())
}

fn default_resources(c: Component) -> ResourceRequirements {
    let (cpu, memory, limit) = match c {
        Component::Generator => ("500m", "128Mi", "256Mi"),
        Component::Worker => ("250m", "128Mi", "256Mi"),
        Component::Dashboard => ("50m", "64Mi", "128Mi"),
    };
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), quantity(cpu)),
            ("memory".to_string(), quantity(memory)),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), quantity(limit))])),
        ..Default::default()
    }
}

fn probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

/// Restricted Pod Security Standard: non-root, no privilege escalation, no
/// capabilities, read-only root filesystem, RuntimeDefault seccomp.
fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// What differs between the components' pods.
struct PodParts {
    env: Vec<EnvVar>,
    /// Secret volumes, each mounted into every container of the pod.
    volumes: Vec<(Volume, VolumeMount)>,
    init_containers: Vec<Container>,
    resources: Option<ResourceRequirements>,
    readiness: &'static str,
}

/// One component's Deployment. Long, but one object literal: splitting it
/// would scatter the pod spec a reader wants to see whole.
fn deployment(p: &Pipeline, c: Component, replicas: i32, image: &str, parts: PodParts) -> Deployment {
    let PodParts {
        env,
        volumes,
        init_containers,
        resources,
        readiness,
    } = parts;
    let (volumes, mounts): (Vec<_>, Vec<_>) = volumes.into_iter().unzip();
    let (volumes, mounts) = if volumes.is_empty() {
        (None, None)
    } else {
        (Some(volumes), Some(mounts))
    };
    let spec = &p.spec;
    Deployment {
        metadata: ObjectMeta {
            name: Some(deployment_name(p, c)),
            namespace: p.namespace(),
            labels: Some(labels(p, c)),
            // blockOwnerDeletion: foreground deletion of a Pipeline waits for its Deployments.
            owner_references: p.controller_owner_ref(&()).map(|mut o| {
                o.block_owner_deletion = Some(true);
                vec![o]
            }),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            revision_history_limit: Some(3),
            selector: LabelSelector {
                match_labels: Some(selector_labels(p, c)),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(p, c)),
                    annotations: Some(BTreeMap::from([
                        ("prometheus.io/scrape".to_string(), "true".to_string()),
                        ("prometheus.io/port".to_string(), METRICS_PORT.to_string()),
                    ])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    init_containers: (!init_containers.is_empty()).then_some(init_containers),
                    containers: vec![Container {
                        name: c.as_str().into(),
                        image: Some(image.into()),
                        command: Some(vec![c.binary().into()]),
                        env: Some(env),
                        ports: Some(vec![ContainerPort {
                            name: Some("metrics".into()),
                            container_port: METRICS_PORT,
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        }]),
                        liveness_probe: Some(probe("/healthz", 10)),
                        readiness_probe: Some(probe(readiness, 5)),
                        resources: Some(resources.unwrap_or_else(|| default_resources(c))),
                        security_context: Some(container_security()),
                        volume_mounts: mounts,
                        ..Default::default()
                    }],
                    volumes,
                    security_context: Some(pod_security()),
                    automount_service_account_token: Some(false),
                    termination_grace_period_seconds: Some(30),
                    node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
                    tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
                    affinity: spec.affinity.clone(),
                    priority_class_name: spec.priority_class_name.clone(),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The workers: `replicas` comes from the scaler (or `spec.workers.replicas`).
pub fn worker_deployment(p: &Pipeline, replicas: i32, image: &str) -> Deployment {
    let s = &p.spec;
    let w = &s.warehouse;
    let mut vars = kafka_env(&s.kafka);
    vars.extend([
        var(envvar::TOPIC, p.topic()),
        var(envvar::GROUP, worker_group(p)),
        var(envvar::SCHEMA, w.schema.clone()),
    ]);
    vars.extend(warehouse_env(w, &w.connection_secret_ref));
    vars.extend([
        var(envvar::BATCH_MAX_RECORDS, s.workers.batch.max_records.to_string()),
        var(envvar::BATCH_MAX_WAIT_MS, s.workers.batch.max_wait_ms.to_string()),
        var(envvar::METRICS_ADDR, format!("0.0.0.0:{METRICS_PORT}")),
        var(envvar::LOG_FORMAT, "json"),
        pod_name_env(),
    ]);
    let volumes = kafka_ca_volume(&s.kafka)
        .into_iter()
        .chain(warehouse_ca_volume(w));
    deployment(
        p,
        Component::Worker,
        replicas,
        image,
        PodParts {
            env: vars,
            volumes: volumes.collect(),
            init_containers: migrate_container(w, image).into_iter().collect(),
            resources: s.workers.resources.clone(),
            readiness: "/readyz",
        },
    )
}

/// With a migrator Secret: the init container that migrates the schema as
/// its owner and grants the loader (and reader) their rights, so the loading
/// container never holds DDL rights. Every pod runs it; under the advisory
/// lock the first migrates, the rest find the schema current at once.
fn migrate_container(w: &WarehouseSpec, image: &str) -> Option<Container> {
    let migrator = w.migrator_secret_ref.as_ref()?;
    let mut env = vec![
        var(envvar::SCHEMA, w.schema.clone()),
        var(envvar::MIGRATE_ONLY, "true"),
    ];
    env.extend(warehouse_env(w, migrator));
    // The grant flags take the roles' URLs and use only their user names.
    env.push(secret_env(
        envvar::GRANT_LOADER,
        &w.connection_secret_ref.name,
        &w.connection_secret_ref.key,
    ));
    if let Some(reader) = &w.reader_secret_ref {
        env.push(secret_env(envvar::GRANT_READER, &reader.name, &reader.key));
    }
    env.push(var(envvar::LOG_FORMAT, "json"));
    Some(Container {
        name: "migrate".into(),
        image: Some(image.into()),
        command: Some(vec![Component::Worker.binary().into()]),
        env: Some(env),
        resources: Some(default_resources(Component::Worker)),
        security_context: Some(container_security()),
        volume_mounts: warehouse_ca_volume(w).map(|(_, m)| vec![m]),
        ..Default::default()
    })
}

/// The generators. Every pod gets the whole profile, its start time and the
/// per-pod rate, and produces its own share (see `generator_plan`).
pub fn generator_deployment(
    p: &Pipeline,
    replicas: i32,
    image: &str,
    profile_start: Option<DateTime<Utc>>,
) -> Deployment {
    let s = &p.spec;
    let g = &s.generator;
    let mut vars = kafka_env(&s.kafka);
    vars.extend([
        var(envvar::TOPIC, p.topic()),
        var(envvar::SEED, g.seed.to_string()),
        var(envvar::CUSTOMERS, g.customers.to_string()),
        var(envvar::PRODUCTS, g.products.to_string()),
        var(envvar::INVALID_RATIO, g.invalid_ratio.to_string()),
        var(envvar::RATE_PER_REPLICA, g.rate_per_replica.to_string()),
    ]);
    if let Some(shop) = &g.shop {
        vars.extend(shop_env(shop));
    }
    match &g.profile {
        Some(profile) => {
            // JSON is YAML: one line, no quoting surprises in the env var.
            let text = serde_json::to_string(profile).unwrap_or_default();
            vars.push(var(envvar::PROFILE_INLINE, text));
            if let Some(start) = profile_start {
                vars.push(var(
                    envvar::PROFILE_START,
                    start.to_rfc3339_opts(SecondsFormat::Millis, true),
                ));
            }
        }
        None => vars.push(var(envvar::RATE, g.events_per_second.to_string())),
    }
    vars.extend([
        var(envvar::KEEP_ALIVE, "true"),
        var(envvar::PROGRESS_INTERVAL, "30s"),
        var(envvar::METRICS_ADDR, format!("0.0.0.0:{METRICS_PORT}")),
        var(envvar::LOG_FORMAT, "json"),
        pod_name_env(),
    ]);
    deployment(
        p,
        Component::Generator,
        replicas,
        image,
        PodParts {
            env: vars,
            volumes: kafka_ca_volume(&s.kafka).into_iter().collect(),
            init_containers: Vec::new(),
            resources: g.resources.clone(),
            readiness: "/healthz",
        },
    )
}

/// The behaviour settings a Pipeline sets; the rest keep the generator's defaults.
fn shop_env(shop: &ShopSpec) -> Vec<EnvVar> {
    let ratios = shop
        .ratios()
        .into_iter()
        .filter_map(|(_, name, v)| v.map(|v| var(name, v.to_string())));
    let delays = shop
        .delays()
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| var(name, format!("{v}s"))));
    ratios.chain(delays).collect()
}

/// The dashboard (one replica; zero when paused): the reader's Secret when
/// the Pipeline names one, else the workers' (the LeastPrivilege condition
/// says so); the token file when the page asks for one.
pub fn dashboard_deployment(p: &Pipeline, image: &str) -> Deployment {
    let s = &p.spec;
    let w = &s.warehouse;
    let mut vars = warehouse_env(
        w,
        w.reader_secret_ref.as_ref().unwrap_or(&w.connection_secret_ref),
    );
    vars.extend([
        var(envvar::SCHEMA, w.schema.clone()),
        // The page, the API and /metrics share the one port.
        var(envvar::LISTEN, format!("0.0.0.0:{METRICS_PORT}")),
        var(envvar::LOG_FORMAT, "json"),
    ]);
    let token = s.dashboard.auth_token_secret_ref.as_ref().map(|t| {
        vars.push(var(
            envvar::AUTH_TOKEN_FILE,
            format!("{TOKEN_MOUNT}/{TOKEN_FILE}"),
        ));
        secret_volume("dashboard-token", t, TOKEN_MOUNT, TOKEN_FILE)
    });
    let replicas = if s.paused { 0 } else { 1 };
    deployment(
        p,
        Component::Dashboard,
        replicas,
        image,
        PodParts {
            env: vars,
            volumes: warehouse_ca_volume(w).into_iter().chain(token).collect(),
            init_containers: Vec::new(),
            resources: None,
            readiness: "/readyz",
        },
    )
}

/// `<pipeline>-dashboard` on port 80.
pub fn dashboard_service(p: &Pipeline) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(deployment_name(p, Component::Dashboard)),
            namespace: p.namespace(),
            labels: Some(labels(p, Component::Dashboard)),
            owner_references: p.controller_owner_ref(&()).map(|mut o| {
                o.block_owner_deletion = Some(true);
                vec![o]
            }),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(p, Component::Dashboard)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("metrics".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}
