//! The committed CRD matches the code, and the examples pass its schema.

use kube::CustomResourceExt;
use serde_json::Value;
use shopstream_model::Pipeline;

const REGENERATE: &str = "run `cargo run -p shopstream-operator -- crd > crds/pipeline.yaml`";

fn committed() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/pipeline.yaml"))
        .expect("crds/pipeline.yaml")
}

#[test]
fn the_committed_crd_is_what_the_code_generates() {
    let generated = serde_yaml::to_string(&Pipeline::crd()).unwrap();
    assert!(
        committed() == generated,
        "crds/pipeline.yaml is out of date: {REGENERATE}"
    );
}

#[test]
fn the_crd_command_prints_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shopstream-operator"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), committed());
}

fn schema() -> jsonschema::Validator {
    let crd: Value = serde_yaml::from_str(&committed()).unwrap();
    let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    jsonschema::validator_for(&schema).expect("a valid JSON schema")
}

fn examples() -> Vec<(String, Value)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let doc: Value = serde_yaml::from_str(&text).unwrap();
            // Only the Pipeline manifests (not, e.g., the local secrets file).
            if doc["kind"] == "Pipeline" {
                out.push((path.display().to_string(), doc));
            }
        }
    }
    out
}

#[test]
fn every_example_passes_the_schema_and_the_spec_checks() {
    let validator = schema();
    let examples = examples();
    assert!(
        examples.len() >= 3,
        "pipeline, load profile and quickstart examples"
    );
    for (path, doc) in examples {
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{path}: {errors:?}");
        let p: Pipeline = serde_json::from_value(doc).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(p.spec.problems().is_empty(), "{path}: {:?}", p.spec.problems());
    }
}

#[test]
fn the_schema_rejects_bad_pipelines() {
    let validator = schema();
    let (_, good) = examples()
        .into_iter()
        .find(|(p, _)| p.ends_with("pipeline.yaml"))
        .unwrap();
    type Breakage = (&'static str, fn(&mut Value));
    let cases: Vec<Breakage> = vec![
        ("schema not an identifier", |v| {
            v["spec"]["warehouse"]["schema"] = "Shop-DB".into()
        }),
        ("zero partitions", |v| v["spec"]["kafka"]["partitions"] = 0.into()),
        ("invalid ratio above 1", |v| {
            v["spec"]["generator"]["invalidRatio"] = 1.5.into()
        }),
        ("negative replicas", |v| {
            v["spec"]["workers"]["replicas"] = (-1).into()
        }),
        ("missing warehouse", |v| {
            v["spec"].as_object_mut().unwrap().remove("warehouse");
        }),
        ("unknown SASL mechanism", |v| {
            v["spec"]["kafka"]["sasl"] = serde_json::json!({"mechanism": "MD5"})
        }),
        (
            "zero-length stage",
            |v| {
                v["spec"]["generator"]["profile"] =
                    serde_json::json!({"stages": [{"durationSeconds": 0, "eventsPerSecond": 5}]})
            },
        ),
    ];
    for (name, break_it) in cases {
        let mut doc = good.clone();
        break_it(&mut doc);
        assert!(!validator.is_valid(&doc), "{name} should be rejected");
    }
    // Rules that span fields are CEL, enforced by the API server.
    let crd: Value = serde_yaml::from_str(&committed()).unwrap();
    let rules = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["workers"]["properties"]["autoscaling"]["x-kubernetes-validations"];
    assert_eq!(rules[0]["rule"], "self.minReplicas <= self.maxReplicas");
}
