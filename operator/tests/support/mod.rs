//! A fake Kubernetes API server on kube-rs's tower-test mock service, and an
//! in-memory Kafka for the reconciler. The fake answers the calls the
//! reconciler makes and records each one (method, path, query, body) so the
//! tests can assert exactly what was sent.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use shopstream_common::kafka::KafkaError;
use shopstream_common::topics::TopicChange;
use shopstream_model::Pipeline;
use shopstream_operator::kafka_ops::{KafkaAccess, KafkaOps, Offsets};
use shopstream_operator::metrics::Metrics;
use shopstream_operator::reconcile::Ctx;

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Call {
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Answers like an API server would, from the objects it is given.
pub struct FakeApi {
    pub pipelines: HashMap<String, Pipeline>,
    /// readyReplicas reported for applied Deployments.
    pub ready: bool,
    pub secrets: HashMap<String, BTreeMap<String, String>>,
    /// Leases by name, with optimistic concurrency on resourceVersion.
    pub leases: HashMap<String, Value>,
    version: u64,
}

fn respond(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn not_found(what: &str) -> Response<Body> {
    respond(
        404,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{what} not found"), "reason": "NotFound", "code": 404}),
    )
}

impl FakeApi {
    pub fn new(pipelines: Vec<Pipeline>) -> Self {
        Self {
            pipelines: pipelines
                .into_iter()
                .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
                .collect(),
            ready: true,
            secrets: HashMap::new(),
            leases: HashMap::new(),
            version: 0,
        }
    }

    fn lease(&mut self, call: &Call, name: Option<&str>) -> Response<Body> {
        match (call.method.as_str(), name) {
            ("GET", Some(n)) => match self.leases.get(n) {
                Some(l) => respond(200, l),
                None => not_found(&format!("lease {n}")),
            },
            ("POST", None) => {
                let n = call.body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if self.leases.contains_key(&n) {
                    return conflict(&n);
                }
                self.store_lease(n, call.body.clone())
            }
            ("PUT", Some(n)) => {
                let current = self
                    .leases
                    .get(n)
                    .map(|l| l["metadata"]["resourceVersion"].clone());
                if current.as_ref() != Some(&call.body["metadata"]["resourceVersion"]) {
                    return conflict(n);
                }
                self.store_lease(n.to_string(), call.body.clone())
            }
            _ => not_found(&call.path),
        }
    }

    fn store_lease(&mut self, name: String, mut lease: Value) -> Response<Body> {
        self.version += 1;
        lease["metadata"]["resourceVersion"] = json!(self.version.to_string());
        self.leases.insert(name, lease.clone());
        respond(200, &lease)
    }

    fn answer(&mut self, call: &Call) -> Response<Body> {
        let segments: Vec<&str> = call.path.trim_start_matches('/').split('/').collect();
        let name = match segments.as_slice() {
            [.., "pipelines", n] | [.., "pipelines", n, "status"] => n.to_string(),
            _ => String::new(),
        };
        let mut pipeline = self
            .pipelines
            .get(&name)
            .map(|p| serde_json::to_value(p).unwrap())
            .unwrap_or(Value::Null);
        match (call.method.as_str(), segments.as_slice()) {
            // A watch that ends at once (the watcher simply watches again).
            ("GET", [.., "pipelines" | "deployments"]) if call.query.contains("watch=true") => {
                respond(200, &Value::Null).map(|_| Body::empty())
            }
            ("GET", [.., resource @ ("pipelines" | "deployments")]) => {
                let (api_version, kind) = if *resource == "pipelines" {
                    ("shopstream.dev/v1alpha1", "PipelineList")
                } else {
                    ("apps/v1", "DeploymentList")
                };
                respond(
                    200,
                    &json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": []}),
                )
            }
            (_, [.., "leases"]) => self.lease(call, None),
            (_, [.., "leases", n]) => {
                let n = n.to_string();
                self.lease(call, Some(&n))
            }
            ("PATCH", [.., "pipelines", _name]) => {
                // The finalizer helper sends a JSON patch on metadata.finalizers.
                let mut finalizers: Vec<Value> = pipeline["metadata"]["finalizers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for op in call.body.as_array().cloned().unwrap_or_default() {
                    match (op["op"].as_str(), op["path"].as_str()) {
                        (Some("add"), Some(p)) if p.starts_with("/metadata/finalizers") => match &op["value"]
                        {
                            Value::Array(v) => finalizers = v.clone(),
                            v => finalizers.push(v.clone()),
                        },
                        (Some("remove"), Some(p)) if p.starts_with("/metadata/finalizers") => {
                            if let Some(i) = p.rsplit('/').next().and_then(|i| i.parse::<usize>().ok()) {
                                if i < finalizers.len() {
                                    finalizers.remove(i);
                                }
                            } else {
                                finalizers.clear();
                            }
                        }
                        _ => {}
                    }
                }
                pipeline["metadata"]["finalizers"] = Value::Array(finalizers);
                self.pipelines
                    .insert(name, serde_json::from_value(pipeline.clone()).unwrap());
                respond(200, &pipeline)
            }
            ("PATCH", [.., "pipelines", _name, "status"]) => {
                pipeline["status"] = call.body["status"].clone();
                respond(200, &pipeline)
            }
            ("DELETE", [.., "deployments" | "services", _name]) => respond(
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            ),
            ("PATCH", [.., "services", _name]) => respond(200, &call.body),
            ("PATCH", [.., "deployments", _name]) => {
                let mut d = call.body.clone();
                let replicas = d["spec"]["replicas"].as_i64().unwrap_or(0);
                let ready = if self.ready { replicas } else { 0 };
                d["status"] = json!({"replicas": replicas, "readyReplicas": ready});
                respond(200, &d)
            }
            ("POST", [.., "events"]) => {
                let mut e = call.body.clone();
                if e["metadata"]["name"].is_null() {
                    e["metadata"]["name"] = json!("event-1");
                }
                respond(201, &e)
            }
            ("GET", [.., "secrets", name]) => match self.secrets.get(*name) {
                Some(data) => {
                    // Serialising the typed Secret base64-encodes its data, as the API server does.
                    let secret = Secret {
                        metadata: ObjectMeta {
                            name: Some(name.to_string()),
                            ..Default::default()
                        },
                        data: Some(
                            data.iter()
                                .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
                                .collect(),
                        ),
                        ..Default::default()
                    };
                    respond(200, &serde_json::to_value(secret).unwrap())
                }
                None => not_found(&format!("secret {name}")),
            },
            _ => not_found(&call.path),
        }
    }
}

fn conflict(name: &str) -> Response<Body> {
    respond(
        409,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{name} was modified"), "reason": "Conflict", "code": 409}),
    )
}

/// Run the fake until the client side is dropped; returns every call made.
pub fn serve(mut api: FakeApi) -> (Client, tokio::task::JoinHandle<Vec<Call>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let task = tokio::spawn(async move {
        let mut calls = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let content_type = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or_default().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let call = Call {
                method,
                path,
                query,
                content_type,
                body,
            };
            send.send_response(api.answer(&call));
            calls.push(call);
        }
        calls
    });
    (client, task)
}

/// In-memory Kafka: topics with partition counts, and fixed offsets.
#[derive(Default, Clone)]
pub struct FakeKafka {
    pub topics: Arc<Mutex<HashMap<String, i32>>>,
    pub deleted: Arc<Mutex<Vec<String>>>,
    pub offsets: Arc<Mutex<Offsets>>,
}

impl KafkaOps for FakeKafka {
    async fn ensure_topic(
        &self,
        _access: &KafkaAccess,
        topic: &str,
        partitions: i32,
        _replication: Option<i32>,
    ) -> Result<TopicChange, KafkaError> {
        let mut topics = self.topics.lock().unwrap();
        Ok(match topics.get(topic).copied() {
            None => {
                topics.insert(topic.to_string(), partitions);
                TopicChange::Created { partitions }
            }
            Some(current) if current == partitions => TopicChange::Unchanged { partitions },
            Some(current) if current > partitions => TopicChange::CannotShrink {
                current,
                requested: partitions,
            },
            Some(current) => {
                topics.insert(topic.to_string(), partitions);
                TopicChange::Grown {
                    from: current,
                    to: partitions,
                }
            }
        })
    }

    async fn delete_topic(&self, _access: &KafkaAccess, topic: &str) -> Result<(), KafkaError> {
        self.topics.lock().unwrap().remove(topic);
        self.deleted.lock().unwrap().push(topic.to_string());
        Ok(())
    }

    async fn offsets(
        &self,
        _access: &KafkaAccess,
        _topic: &str,
        _group: &str,
    ) -> Result<Offsets, KafkaError> {
        Ok(self.offsets.lock().unwrap().clone())
    }
}

/// A reconciler context over the fake API server and any Kafka (fake or real).
pub fn ctx<K: KafkaOps>(client: Client, kafka: K) -> Arc<Ctx<K>> {
    Arc::new(Ctx {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "shopstream-operator".into(),
                instance: Some("test".into()),
            },
        ),
        client,
        kafka,
        default_image: "shopstream:test".into(),
        metrics: Metrics::new(),
        scale_interval: Duration::from_secs(15),
        memory: Mutex::new(HashMap::new()),
        started: Instant::now(),
    })
}

pub fn pipeline(yaml: &str) -> Pipeline {
    serde_yaml::from_str(yaml).unwrap()
}
