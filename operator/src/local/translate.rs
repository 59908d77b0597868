//! Deployment -> process: the local runtime runs exactly the pod the
//! Kubernetes Deployment describes, translated rule by rule:
//!
//! - the container's command runs from the binaries directory;
//! - literal env values pass through; `secretKeyRef` values come from the
//!   [`SecretStore`]; the `metadata.name` field ref becomes the replica's name;
//! - Secret volumes become files under the run directory, and env values
//!   pointing into their mount paths are rewritten to match;
//! - every replica gets its own port on 127.0.0.1 (metrics, or the dashboard's page);
//! - init containers run, translated the same way, to completion before the
//!   first replica starts (the runtime's processes share one machine, so once
//!   stands for every pod).
//!
//! Anything else in a pod spec has no local meaning and is ignored
//! (resources, probes, scheduling, security context).

use shopstream_model::envvar;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};

use super::LocalError;
use super::secrets::SecretStore;

/// One replica as a process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSpec {
    /// `<deployment>-<run>-<slot>`, like a pod name.
    pub name: String,
    pub program: PathBuf,
    pub env: Vec<(String, String)>,
    pub metrics_addr: SocketAddr,
    /// Files to write before starting (Secret volumes).
    pub files: Vec<(PathBuf, String)>,
}

impl ProcessSpec {
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

pub struct Placement<'a> {
    pub bin_dir: &'a Path,
    pub run_dir: &'a Path,
    /// Distinguishes this run's "pods" from earlier runs' (as a ReplicaSet's
    /// hash does), so generators never repeat an earlier run's event ids.
    pub run_id: &'a str,
    pub slot: usize,
    pub metrics_port: u16,
}

fn pod_spec(d: &Deployment) -> Result<&PodSpec, LocalError> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .ok_or_else(|| LocalError::Translate("the Deployment has no pod spec".into()))
}

pub fn translate(
    d: &Deployment,
    secrets: &SecretStore,
    at: &Placement<'_>,
) -> Result<ProcessSpec, LocalError> {
    let deployment = d.metadata.name.clone().unwrap_or_default();
    let name = format!("{deployment}-{}-{}", at.run_id, at.slot);
    let pod = pod_spec(d)?;
    let container = pod
        .containers
        .first()
        .ok_or_else(|| LocalError::Translate(format!("{deployment} has no container")))?;
    translate_container(pod, container, name, secrets, at)
}

/// The pod's init containers, in order, as processes to run to completion
/// before the first replica starts (`<pod>-<container>`).
pub fn init_processes(
    d: &Deployment,
    secrets: &SecretStore,
    at: &Placement<'_>,
) -> Result<Vec<ProcessSpec>, LocalError> {
    let deployment = d.metadata.name.clone().unwrap_or_default();
    let pod = pod_spec(d)?;
    pod.init_containers
        .iter()
        .flatten()
        .map(|c| {
            let name = format!("{deployment}-{}-{}-{}", at.run_id, at.slot, c.name);
            translate_container(pod, c, name, secrets, at)
        })
        .collect()
}

fn translate_container(
    pod: &PodSpec,
    container: &Container,
    name: String,
    secrets: &SecretStore,
    at: &Placement<'_>,
) -> Result<ProcessSpec, LocalError> {
    let command = container
        .command
        .as_ref()
        .and_then(|c| c.first())
        .ok_or_else(|| LocalError::Translate(format!("{name}: the container has no command")))?;
    let program = at.bin_dir.join(command);

    // Secret volumes -> files; remember where each mount went.
    let mut files = Vec::new();
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = pod.volumes.iter().flatten().find(|v| v.name == mount.name) else {
            continue;
        };
        let Some(secret) = &volume.secret else {
            return Err(LocalError::Translate(format!(
                "{name}: volume {} is not a Secret; only Secret volumes run locally",
                volume.name
            )));
        };
        let secret_name = secret.secret_name.clone().unwrap_or_default();
        let local_dir = at.run_dir.join("volumes").join(&name).join(&volume.name);
        for item in secret.items.iter().flatten() {
            files.push((local_dir.join(&item.path), secrets.get(&secret_name, &item.key)?));
        }
        mounts.push((mount.mount_path.clone(), local_dir));
    }

    let metrics_addr = SocketAddr::from(([127, 0, 0, 1], at.metrics_port));
    let mut env = Vec::new();
    for var in container.env.iter().flatten() {
        let value = env_value(var, &name, secrets)?;
        let value = match var.name.as_str() {
            envvar::METRICS_ADDR | envvar::LISTEN => metrics_addr.to_string(),
            _ => remap(&value, &mounts),
        };
        env.push((var.name.clone(), value));
    }
    Ok(ProcessSpec {
        name,
        program,
        env,
        metrics_addr,
        files,
    })
}

fn env_value(var: &EnvVar, pod_name: &str, secrets: &SecretStore) -> Result<String, LocalError> {
    if let Some(v) = &var.value {
        return Ok(v.clone());
    }
    let Some(from) = &var.value_from else {
        return Ok(String::new());
    };
    if let Some(s) = &from.secret_key_ref {
        return secrets.get(&s.name, &s.key);
    }
    if let Some(f) = &from.field_ref
        && f.field_path == "metadata.name"
    {
        return Ok(pod_name.to_string());
    }
    Err(LocalError::Translate(format!(
        "env {}: this kind of valueFrom has no local meaning",
        var.name
    )))
}

/// Rewrite a path inside a container mount to the local copy.
fn remap(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (mount, local) in mounts {
        if let Some(rest) = value.strip_prefix(mount.as_str()) {
            return format!("{}{}", local.display(), rest);
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::builders;

    fn pipeline(yaml: &str) -> shopstream_model::Pipeline {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn secrets() -> SecretStore {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        SecretStore::from_map(BTreeMap::from([
            (
                "warehouse".to_string(),
                map(&[("url", "postgres://postgres@127.0.0.1/shop")]),
            ),
            (
                "kafka-user".to_string(),
                map(&[("username", "svc"), ("password", "s3cret")]),
            ),
            (
                "kafka-ca".to_string(),
                map(&[("ca.pem", "-----BEGIN CERTIFICATE-----")]),
            ),
            (
                "owner".to_string(),
                map(&[("url", "postgres://owner@127.0.0.1/shop")]),
            ),
        ]))
    }

    const SECURE: &str = r#"
apiVersion: shopstream.dev/v1alpha1
kind: Pipeline
metadata: {name: shop, namespace: default}
spec:
  kafka:
    bootstrapServers: "127.0.0.1:9092"
    tls: {enabled: true, caSecretRef: {name: kafka-ca, key: ca.pem}}
    sasl: {mechanism: PLAIN}
    credentialsSecretRef: {name: kafka-user}
  warehouse: {connectionSecretRef: {name: warehouse, key: url}, schema: shop}
"#;

    #[test]
    fn a_worker_deployment_becomes_the_same_process() {
        let d = builders::worker_deployment(&pipeline(SECURE), 2, "img");
        let run = Path::new("/run/x");
        let spec = translate(
            &d,
            &secrets(),
            &Placement {
                bin_dir: Path::new("/opt/bin"),
                run_dir: run,
                run_id: "r1",
                slot: 1,
                metrics_port: 19111,
            },
        )
        .unwrap();
        // (variable, value the process gets)
        let cases = [
            (envvar::INSTANCE, "shop-worker-r1-1"),
            (envvar::DATABASE_URL, "postgres://postgres@127.0.0.1/shop"),
            (envvar::KAFKA_SASL_USERNAME, "svc"),
            (envvar::KAFKA_SASL_PASSWORD, "s3cret"),
            (envvar::KAFKA_SECURITY_PROTOCOL, "sasl-ssl"),
            (envvar::METRICS_ADDR, "127.0.0.1:19111"),
            (
                envvar::KAFKA_CA_FILE,
                "/run/x/volumes/shop-worker-r1-1/kafka-ca/ca.crt",
            ),
            (envvar::TOPIC, "shop-events"),
            (envvar::SCHEMA, "shop"),
        ];
        for (var, want) in cases {
            assert_eq!(spec.env_value(var), Some(want), "{var}");
        }
        assert_eq!(spec.name, "shop-worker-r1-1");
        assert_eq!(spec.program, Path::new("/opt/bin/shopstream-worker"));
        assert_eq!(
            spec.files,
            vec![(
                PathBuf::from("/run/x/volumes/shop-worker-r1-1/kafka-ca/ca.crt"),
                "-----BEGIN CERTIFICATE-----".to_string()
            )]
        );
        // Every variable of the pod is there, in order.
        let pod_vars: Vec<String> = d.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        let proc_vars: Vec<String> = spec.env.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(pod_vars, proc_vars);
    }

    #[test]
    fn init_containers_become_processes_that_run_first() {
        let p = pipeline(&SECURE.replace(
            "warehouse: {connectionSecretRef: {name: warehouse, key: url}, schema: shop}",
            "warehouse: {connectionSecretRef: {name: warehouse, key: url}, schema: shop,
               migratorSecretRef: {name: owner, key: url}, caSecretRef: {name: kafka-ca, key: ca.pem}}",
        ));
        let d = builders::worker_deployment(&p, 1, "img");
        let store = secrets();
        let at = Placement {
            bin_dir: Path::new("/opt/bin"),
            run_dir: Path::new("/run/x"),
            run_id: "r1",
            slot: 0,
            metrics_port: 0,
        };
        let init = init_processes(&d, &store, &at).unwrap();
        assert_eq!(init.len(), 1);
        let m = &init[0];
        assert_eq!(m.name, "shop-worker-r1-0-migrate");
        assert_eq!(m.program, Path::new("/opt/bin/shopstream-worker"));
        let cases = [
            (envvar::MIGRATE_ONLY, "true"),
            (envvar::DATABASE_URL, "postgres://owner@127.0.0.1/shop"),
            (envvar::GRANT_LOADER, "postgres://postgres@127.0.0.1/shop"),
            (
                envvar::DATABASE_CA_FILE,
                "/run/x/volumes/shop-worker-r1-0-migrate/warehouse-ca/ca.crt",
            ),
        ];
        for (var, want) in cases {
            assert_eq!(m.env_value(var), Some(want), "{var}");
        }
        assert_eq!(
            m.env_value(envvar::KAFKA_SASL_PASSWORD),
            None,
            "no Kafka credentials"
        );
        // The loading process itself gets the loader's URL, never the owner's.
        let main = translate(&d, &store, &at).unwrap();
        assert_eq!(
            main.env_value(envvar::DATABASE_URL),
            Some("postgres://postgres@127.0.0.1/shop")
        );
        // Without a migrator there is nothing to run first.
        let plain = builders::worker_deployment(&pipeline(SECURE), 1, "img");
        assert!(init_processes(&plain, &secrets(), &at).unwrap().is_empty());
    }

    #[test]
    fn a_missing_secret_names_the_variable_to_set() {
        let d = builders::worker_deployment(&pipeline(SECURE), 1, "img");
        let err = translate(
            &d,
            &SecretStore::default(),
            &Placement {
                bin_dir: Path::new("/b"),
                run_dir: Path::new("/r"),
                run_id: "r1",
                slot: 0,
                metrics_port: 1,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("SHOPSTREAM_SECRET_"), "{err}");
    }
}
