//! Table-driven tests of the pure Deployment builders, from YAML fixtures.

use serde::Deserialize;
use serde_json::Value;
use shopstream_model::Pipeline;
use shopstream_operator::builders::{self, Component};

#[derive(Deserialize)]
struct Case {
    name: String,
    component: String,
    replicas: i32,
    #[serde(default = "default_image")]
    image: String,
    #[serde(default)]
    profile_start: Option<chrono::DateTime<chrono::Utc>>,
    pipeline: Pipeline,
    expect: Value,
}

fn default_image() -> String {
    "shopstream:test".into()
}

/// `actual` contains `expected`: objects key by key, lists item by item
/// (each expected item matches some actual item), scalars equal.
fn contains(actual: &Value, expected: &Value, path: &str) -> Result<(), String> {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, ev) in e {
                let av = a.get(k).ok_or_else(|| format!("{path}.{k} is missing"))?;
                contains(av, ev, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(e)) => {
            for (i, ev) in e.iter().enumerate() {
                if !a.iter().any(|av| contains(av, ev, path).is_ok()) {
                    return Err(format!(
                        "{path}[{i}] = {ev} matches no item of {}",
                        Value::Array(a.clone())
                    ));
                }
            }
            Ok(())
        }
        (a, e) if a == e => Ok(()),
        (a, e) => Err(format!("{path}: expected {e}, got {a}")),
    }
}

#[test]
fn deployments_match_the_fixtures() {
    let cases: Vec<Case> = serde_yaml::from_str(include_str!("fixtures/builders.yaml")).unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let d = match case.component.as_str() {
            "worker" => builders::worker_deployment(&case.pipeline, case.replicas, &case.image),
            "generator" => {
                builders::generator_deployment(&case.pipeline, case.replicas, &case.image, case.profile_start)
            }
            "dashboard" => {
                let d = builders::dashboard_deployment(&case.pipeline, &case.image);
                assert_eq!(
                    d.spec.as_ref().and_then(|s| s.replicas),
                    Some(case.replicas),
                    "{}",
                    case.name
                );
                d
            }
            other => panic!("unknown component {other}"),
        };
        let actual = serde_json::to_value(&d).unwrap();
        if let Err(e) = contains(&actual, &case.expect, "") {
            panic!(
                "{}: {e}\nbuilt: {}",
                case.name,
                serde_yaml::to_string(&actual).unwrap()
            );
        }
        // Secrets only ever arrive by reference.
        let pod = d.spec.unwrap().template.spec.unwrap();
        for c in pod
            .containers
            .into_iter()
            .chain(pod.init_containers.unwrap_or_default())
        {
            for var in c.env.unwrap_or_default() {
                let literal = var.value.unwrap_or_default();
                assert!(
                    !(literal.contains("postgres://")
                        || var.name.contains("PASSWORD") && !literal.is_empty()),
                    "{}: {} carries a secret literally",
                    case.name,
                    var.name
                );
            }
        }
    }
}

/// Each container sees only its own role's credentials: the migrator's
/// Secret reaches the init container alone, the loader's never the dashboard
/// when a reader is given.
#[test]
fn each_container_gets_only_its_own_warehouse_credentials() {
    let cases: Vec<Case> = serde_yaml::from_str(include_str!("fixtures/builders.yaml")).unwrap();
    let p = &cases
        .iter()
        .find(|c| c.name.starts_with("with a migrator"))
        .expect("the roles case")
        .pipeline;
    let secrets_of = |c: &k8s_openapi::api::core::v1::Container| -> Vec<(String, String)> {
        c.env
            .iter()
            .flatten()
            .filter_map(|v| {
                let s = v.value_from.as_ref()?.secret_key_ref.as_ref()?;
                Some((v.name.clone(), s.name.clone()))
            })
            .collect()
    };
    let worker = builders::worker_deployment(p, 1, "img")
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    let init = worker.init_containers.expect("an init container");
    assert_eq!(init.len(), 1);
    assert_eq!(
        secrets_of(&init[0]),
        [
            ("SHOPSTREAM_DATABASE_URL", "wh-owner"),
            ("SHOPSTREAM_GRANT_LOADER", "wh-loader"),
            ("SHOPSTREAM_GRANT_READER", "wh-reader")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(
        secrets_of(&worker.containers[0]),
        [("SHOPSTREAM_DATABASE_URL".to_string(), "wh-loader".to_string())]
    );
    let dashboard = builders::dashboard_deployment(p, "img")
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert_eq!(dashboard.init_containers, None);
    assert_eq!(
        secrets_of(&dashboard.containers[0]),
        [("SHOPSTREAM_DATABASE_URL".to_string(), "wh-reader".to_string())]
    );
    // Without the two Secrets: no init container; the dashboard shares the loader's.
    let shared = &cases[0].pipeline;
    let worker = builders::worker_deployment(shared, 1, "img")
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert_eq!(worker.init_containers, None);
}

#[test]
fn selector_string_matches_the_selector_labels() {
    let cases: Vec<Case> = serde_yaml::from_str(include_str!("fixtures/builders.yaml")).unwrap();
    let p = &cases[0].pipeline;
    let s = builders::selector_string(p, Component::Worker);
    for (k, v) in builders::selector_labels(p, Component::Worker) {
        assert!(s.contains(&format!("{k}={v}")), "{s}");
    }
}

#[test]
fn the_dashboard_service_reaches_the_dashboard_pods_only() {
    let cases: Vec<Case> = serde_yaml::from_str(include_str!("fixtures/builders.yaml")).unwrap();
    let case = cases
        .iter()
        .find(|c| c.component == "dashboard")
        .expect("a dashboard case");
    let p = &case.pipeline;
    let svc = builders::dashboard_service(p);
    let d = builders::dashboard_deployment(p, "shopstream:test");
    assert_eq!(svc.metadata.name.as_deref(), Some("shop-dashboard"));
    assert_eq!(svc.metadata.owner_references.as_ref().map(Vec::len), Some(1));
    let spec = svc.spec.unwrap();
    // The selector picks the dashboard's pods, not the workers' or generators'.
    let pod_labels = d.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    let selector = spec.selector.unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    assert_eq!(
        selector.get("app.kubernetes.io/component").map(String::as_str),
        Some("dashboard")
    );
    let port = &spec.ports.unwrap()[0];
    assert_eq!(port.port, 80);
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
            "metrics".into()
        ))
    );
}

#[test]
fn the_dashboard_gets_no_kafka_credentials_or_ca() {
    let cases: Vec<Case> = serde_yaml::from_str(include_str!("fixtures/builders.yaml")).unwrap();
    let mut p = cases
        .iter()
        .find(|c| c.name.starts_with("secret references"))
        .expect("the secure case")
        .pipeline
        .clone();
    p.spec.dashboard.enabled = true;
    let pod = builders::dashboard_deployment(&p, "shopstream:test")
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert!(pod.volumes.is_none());
    let env = pod.containers[0].env.clone().unwrap();
    assert!(
        env.iter().all(|v| !v.name.starts_with("SHOPSTREAM_KAFKA")),
        "{env:?}"
    );
}

/// The env vars are the contract between the operator and the binaries it
/// starts: every variable a builder sets must be one the target binary's
/// command line reads (a renamed flag would otherwise be ignored silently),
/// and its value must parse (a protocol spelt `sasl_ssl` would fail the pod).
#[test]
fn every_env_var_a_builder_sets_is_read_and_parsed_by_its_binary() {
    use clap::CommandFactory;
    let cases: Vec<Case> = serde_yaml::from_str(include_str!("fixtures/builders.yaml")).unwrap();
    let start = Some(chrono::Utc::now());
    let mut checked = 0;
    for case in &cases {
        let mut p = case.pipeline.clone();
        p.spec.dashboard.enabled = true;
        let built = [
            (
                "generator",
                builders::generator_deployment(&p, 1, "i", start),
                shopstream_generator::Cli::command(),
            ),
            (
                "worker",
                builders::worker_deployment(&p, 1, "i"),
                shopstream_worker::cli::Cli::command(),
            ),
            (
                "dashboard",
                builders::dashboard_deployment(&p, "i"),
                shopstream_dashboard::Cli::command(),
            ),
        ];
        for (component, d, mut cmd) in built {
            // Resolves each argument's value count, as parsing would.
            cmd.build();
            let pod = d.spec.unwrap().template.spec.unwrap();
            // The same settings as flags: the env var's value, or a stand-in
            // for one that comes from a Secret.
            let mut argv = vec![format!("shopstream-{component}")];
            for v in pod.containers[0].env.clone().unwrap_or_default() {
                let arg = cmd
                    .get_arguments()
                    .find(|a| a.get_env().is_some_and(|e| e == v.name.as_str()))
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: the {component} Deployment sets {} but shopstream-{component} reads no such variable",
                            case.name, v.name
                        )
                    });
                let long = format!("--{}", arg.get_long().expect("env flags are long flags"));
                let value = v
                    .value
                    .clone()
                    .unwrap_or_else(|| "postgres://from-a-secret/db".to_string());
                if arg.get_num_args().is_some_and(|n| n.takes_values()) {
                    argv.extend([long, value]);
                } else if value == "true" {
                    argv.push(long);
                }
                checked += 1;
            }
            if let Err(e) = cmd.clone().try_get_matches_from(&argv) {
                panic!(
                    "{}: shopstream-{component} rejects what its Deployment sets ({argv:?}):\n{e}",
                    case.name
                );
            }
        }
    }
    assert!(checked > 50, "only {checked} variables checked");
}
