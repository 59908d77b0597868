//! Shared helpers for integration tests that run against the real broker and
//! PostgreSQL (see `scripts/dev-deps.sh`). Each test creates its own topic
//! (and schema) with a unique name so tests run in parallel.

use std::collections::HashMap;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use shopstream_common::kafka::KafkaArgs;
use shopstream_common::topics::TopicAdmin;

/// Broker under test: `SHOPSTREAM_TEST_BROKERS` or the dev broker.
pub fn brokers() -> String {
    std::env::var("SHOPSTREAM_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// The test broker's SCRAM-SHA-512 and TLS listeners (`scripts/start-broker.sh`),
/// passed on by `scripts/test.sh` as `SHOPSTREAM_TEST_*` variables.
pub struct SecuredBroker {
    pub sasl: String,
    pub ssl: String,
    pub ca_file: std::path::PathBuf,
    pub username: String,
    pub password: String,
}

pub fn secured_broker() -> SecuredBroker {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run the tests with scripts/test.sh (it starts the broker's SASL and TLS listeners)")
        })
    };
    SecuredBroker {
        sasl: var("SHOPSTREAM_TEST_BROKERS_SASL"),
        ssl: var("SHOPSTREAM_TEST_BROKERS_SSL"),
        ca_file: var("SHOPSTREAM_TEST_KAFKA_CA_FILE").into(),
        username: var("SHOPSTREAM_TEST_SCRAM_USERNAME"),
        password: var("SHOPSTREAM_TEST_SCRAM_PASSWORD"),
    }
}

/// The directory of `exe` (a test's `CARGO_BIN_EXE_*`), checking that the
/// other binaries a test runs were built next to it.
pub fn bin_dir(exe: &str, siblings: &[&str]) -> std::path::PathBuf {
    let dir = std::path::Path::new(exe)
        .parent()
        .expect("a binary path has a directory")
        .to_path_buf();
    for bin in siblings {
        assert!(
            dir.join(bin).exists(),
            "{bin} is not built next to {exe}; run `cargo build --workspace` (scripts/test.sh does)"
        );
    }
    dir
}

/// `shopstream-operator local -f MANIFEST` with the test warehouse as the
/// `warehouse` Secret, the worker and generator built next to `operator`, and
/// the children's logs in `run_dir`; callers add their own flags.
pub fn operator_local(operator: &str, manifest: &std::path::Path, run_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(operator);
    cmd.env("SHOPSTREAM_SECRET_WAREHOUSE_URL", database_url())
        .env("RUST_LOG", "info")
        .arg("local")
        .arg("-f")
        .arg(manifest)
        .arg("--bin-dir")
        .arg(bin_dir(operator, &["shopstream-worker", "shopstream-generator"]))
        .arg("--run-dir")
        .arg(run_dir);
    cmd
}

/// Write a Pipeline manifest for `operator local` into `dir`: `kafka` is the
/// flow mapping of `spec.kafka`, `rest` the spec's other fields (indented by
/// two spaces) after the warehouse in `schema`.
pub fn local_manifest(
    dir: &std::path::Path,
    name: &str,
    kafka: &str,
    schema: &str,
    rest: &str,
) -> std::path::PathBuf {
    let path = dir.join("pipeline.yaml");
    let text = format!(
        "apiVersion: shopstream.dev/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}}}\nspec:\n  \
         kafka: {kafka}\n  warehouse: {{connectionSecretRef: {{name: warehouse, key: url}}, schema: {schema}}}\n{rest}"
    );
    std::fs::write(&path, text).expect("write the manifest");
    path
}

/// `prefix-<random>`: a fresh topic, schema or group name per test.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// Create a topic on the test broker.
pub async fn create_topic(name: &str, partitions: i32) {
    let admin =
        TopicAdmin::new(&KafkaArgs::plaintext(brokers()), Duration::from_secs(10)).expect("admin client");
    admin.ensure(name, partitions, 1).await.expect("create topic");
    // Metadata can lag creation briefly on some brokers: wait until it shows.
    wait_until(Duration::from_secs(10), || {
        admin.partitions(name).ok().flatten() == Some(partitions)
    });
}

/// Delete a topic and create it again under the same name (empty, offsets
/// starting over), as deleting and re-applying a Pipeline does.
pub async fn recreate_topic(name: &str, partitions: i32) {
    let admin =
        TopicAdmin::new(&KafkaArgs::plaintext(brokers()), Duration::from_secs(10)).expect("admin client");
    admin.delete(name).await.expect("delete topic");
    wait_until(Duration::from_secs(30), || {
        admin.partitions(name).ok().flatten().is_none()
    });
    // Creation is refused while the broker still finishes the deletion.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match admin.ensure(name, partitions, 1).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("recreating {name}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("recreating {name}: {e}"),
        }
    }
    wait_until(Duration::from_secs(10), || {
        admin.partitions(name).ok().flatten() == Some(partitions)
    });
}

/// Grow a topic on the test broker (the operator's code path: CreatePartitions).
pub async fn grow_topic(name: &str, partitions: i32) {
    let admin =
        TopicAdmin::new(&KafkaArgs::plaintext(brokers()), Duration::from_secs(10)).expect("admin client");
    let change = admin.ensure(name, partitions, 1).await.expect("grow topic");
    assert!(
        matches!(change, shopstream_common::topics::TopicChange::Grown { to, .. } if to == partitions),
        "growing {name}: {change:?}"
    );
}

/// The offsets `group` has committed for `topic`'s partitions 0..n (`None`:
/// nothing committed), as lag tools and the operator's scaler read them.
pub fn group_offsets(group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

/// One consumed record.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// Read every record currently in `topic`, from offset 0 up to each
/// partition's high watermark. Panics after `timeout`.
pub fn drain_topic(topic: &str, timeout: Duration) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("testkit-drain"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "20")
        .set("broker.address.family", "v4")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, *p, Duration::from_secs(10))
            .expect("watermarks");
        if high > 0 {
            ends.insert(*p, high);
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .expect("tpl");
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut next: HashMap<i32, i64> = ends.keys().map(|p| (*p, 0)).collect();
    while next.iter().any(|(p, n)| *n < ends[p]) {
        assert!(
            Instant::now() < deadline,
            "draining {topic} timed out: at {next:?}, want {ends:?}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                next.insert(m.partition(), m.offset() + 1);
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                });
            }
            Some(Err(e)) => panic!("consume error on {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// Poll `cond` every 50 ms until it holds; panics after `timeout`.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "condition not met within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process that is killed when dropped, so a failing test never
/// leaves processes behind.
pub struct ChildGuard {
    pub child: Child,
    pub name: String,
}

impl ChildGuard {
    pub fn spawn(name: &str, cmd: &mut Command) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            child,
            name: name.to_string(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send a signal (e.g. `SIGTERM`, `SIGKILL`) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// Wait for exit; panics after `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Warehouse under test: `SHOPSTREAM_TEST_DATABASE_URL` or the dev database
/// created by `scripts/dev-deps.sh`.
pub fn database_url() -> String {
    std::env::var("SHOPSTREAM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/shopstream_test".to_string())
}

/// The CA that signed the test PostgreSQL's certificate (for `localhost`
/// only): `SHOPSTREAM_TEST_DATABASE_CA_FILE`, or where `scripts/dev-deps.sh` made it.
pub fn database_ca_file() -> String {
    std::env::var("SHOPSTREAM_TEST_DATABASE_CA_FILE")
        .unwrap_or_else(|_| "/var/tmp/shopstream-dev/pg-tls/ca.crt".to_string())
}

/// The test database's URL with another host name and query, e.g.
/// `("localhost", "sslmode=verify-full")`; the user and database stay.
pub fn database_url_via(host: &str, query: &str) -> String {
    let config = database_config();
    url_for(config.get_user().unwrap_or("postgres"), None, host, query)
}

fn database_config() -> postgres::Config {
    database_url().parse().expect("a valid test database URL")
}

/// The test database's URL as `role` with `password`, via `host` (`query`
/// may be empty).
pub fn database_url_as(role: &str, password: &str, host: &str, query: &str) -> String {
    url_for(role, Some(password), host, query)
}

fn url_for(user: &str, password: Option<&str>, host: &str, query: &str) -> String {
    let config = database_config();
    let password = password.map(|p| format!(":{p}")).unwrap_or_default();
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!(
        "postgres://{user}{password}@{host}:{}/{}{query}",
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_dbname().unwrap_or("postgres")
    )
}

/// Three login roles for one test, as a DBA would make them: the migrator
/// may create schemas in the test database; the loader and the reader start
/// with nothing (the migrator's `--migrate-only --grant-*` gives them their
/// rights). Each has its own password, [`WarehouseRoles::password`]. Dropped,
/// with all they own or were granted, when the test passes.
pub struct WarehouseRoles {
    pub migrator: String,
    pub loader: String,
    pub reader: String,
}

impl WarehouseRoles {
    pub fn create(prefix: &str) -> Self {
        let roles = Self {
            migrator: format!("{prefix}_migrator"),
            loader: format!("{prefix}_loader"),
            reader: format!("{prefix}_reader"),
        };
        let config = database_config();
        let db = config.get_dbname().unwrap_or("postgres").to_string();
        let mut sql = String::new();
        for role in [&roles.migrator, &roles.loader, &roles.reader] {
            sql.push_str(&format!(
                "CREATE ROLE {role} LOGIN PASSWORD '{}';",
                Self::password(role)
            ));
        }
        sql.push_str(&format!(
            "GRANT CREATE ON DATABASE \"{db}\" TO {};",
            roles.migrator
        ));
        // On a thread of its own: callers may be on an async runtime.
        std::thread::spawn(move || pg().batch_execute(&sql))
            .join()
            .expect("role creation")
            .expect("create the roles");
        roles
    }

    /// The role's password: distinct per role and test, so a test can look
    /// for it in everything a run printed.
    pub fn password(role: &str) -> String {
        format!("pw-{role}")
    }
}

impl Drop for WarehouseRoles {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return; // kept with the schema for inspection
        }
        let sql = format!(
            "DROP OWNED BY {m}, {l}, {r} CASCADE; DROP ROLE {m}, {l}, {r};",
            m = self.migrator,
            l = self.loader,
            r = self.reader
        );
        let _ = std::thread::spawn(move || pg().batch_execute(&sql)).join();
    }
}

pub fn pg() -> postgres::Client {
    postgres::Client::connect(&database_url(), postgres::NoTls).expect("connect to the test database")
}

/// A schema owned by one test; dropped when the test passes, kept for
/// inspection when it fails.
pub struct TestSchema {
    pub name: String,
}

impl TestSchema {
    pub fn new(prefix: &str) -> Self {
        Self { name: unique(prefix) }
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping schema {} for inspection", self.name);
            return;
        }
        // On a thread of its own: the sync client cannot run inside an async runtime.
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = postgres::Client::connect(&database_url(), postgres::NoTls) {
                let _ = c.batch_execute(&sql);
            }
        })
        .join();
    }
}

/// Produce raw records (key, value; `None` is a tombstone) to one partition,
/// in order, and wait until the broker has them all.
pub fn produce_raw(topic: &str, partition: i32, records: &[(&[u8], Option<&[u8]>)]) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("broker.address.family", "v4")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for (key, value) in records {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(partition).key(*key);
        if let Some(v) = value {
            record = record.payload(*v);
        }
        producer.send(record).map_err(|(e, _)| e).expect("enqueue");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("all records acknowledged");
}

/// A free local address (`127.0.0.1:port`) for a server a test starts.
pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("127.0.0.1:{port}")
}

/// A plain HTTP/1.1 GET to `addr` (host:port); the raw response (status
/// line, headers, body), or `None` when the server cannot be reached.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    http_get_within(addr, path, Duration::from_secs(30))
}

/// [`http_get`] that gives up (`None`) when the whole answer takes longer
/// than `timeout`, like `curl -m`.
pub fn http_get_within(addr: &str, path: &str, timeout: Duration) -> Option<String> {
    use std::io::{Read, Write};
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, timeout).ok()?;
    let deadline = Instant::now() + timeout;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    (Instant::now() <= deadline).then_some(out)
}

/// A TCP proxy to a real server that a test can cut and restore, or make
/// stop answering, to play a database or broker outage (or a silently
/// dropped network path) without touching the shared service.
pub struct TcpProxy {
    pub addr: std::net::SocketAddr,
    state: std::sync::Arc<std::sync::atomic::AtomicU8>,
    cut: std::sync::Arc<tokio::sync::Notify>,
    stall: std::sync::Arc<tokio::sync::Notify>,
}

const PROXY_UP: u8 = 0;
const PROXY_DOWN: u8 = 1;
const PROXY_STALLED: u8 = 2;

impl TcpProxy {
    /// Listen on 127.0.0.1 (a free port) and forward to `target`.
    pub async fn start(target: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(PROXY_UP));
        let cut = std::sync::Arc::new(tokio::sync::Notify::new());
        let stall = std::sync::Arc::new(tokio::sync::Notify::new());
        let (state2, cut2, stall2) = (state.clone(), cut.clone(), stall.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let (cut, stall) = (cut2.clone(), stall2.clone());
                match state2.load(Ordering::SeqCst) {
                    PROXY_DOWN => drop(inbound), // refuse while down
                    PROXY_STALLED => {
                        // Accept, never answer, until cut.
                        tokio::spawn(async move {
                            cut.notified().await;
                            drop(inbound);
                        });
                    }
                    _ => {
                        tokio::spawn(async move {
                            let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                                _ = cut.notified() => {}
                                // Keep both ends open, forward nothing, until cut.
                                _ = stall.notified() => cut.notified().await,
                            }
                        });
                    }
                }
            }
        });
        Self {
            addr,
            state,
            cut,
            stall,
        }
    }

    /// Drop every connection and refuse new ones.
    pub fn down(&self) {
        self.state.store(PROXY_DOWN, std::sync::atomic::Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    /// Keep every connection open but forward nothing, and accept new ones
    /// without ever answering: what a silently dropped network path looks like.
    pub fn stall(&self) {
        self.state
            .store(PROXY_STALLED, std::sync::atomic::Ordering::SeqCst);
        self.stall.notify_waiters();
    }

    /// Forward new connections again (stalled ones stay stalled until cut).
    pub fn up(&self) {
        self.state.store(PROXY_UP, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Print the end of every log file in `logs` (a run directory that goes away
/// with the test), to see why a run failed.
pub fn print_log_tails(logs: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(logs) else {
        return;
    };
    let mut paths: Vec<std::path::PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        println!("--- {} (last 40 lines)", path.display());
        for line in &lines[lines.len().saturating_sub(40)..] {
            println!("{line}");
        }
    }
}

/// A CA certificate (PEM) that signed nothing the tests talk to: the wrong
/// CA for a TLS test. Made fresh, self-signed.
pub fn foreign_ca_pem() -> String {
    use openssl::{asn1::Asn1Time, bn::BigNum, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509};
    let key = PKey::from_rsa(Rsa::generate(2048).expect("RSA key")).expect("key");
    let mut name = x509::X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "not-the-warehouse-ca")
        .expect("CN");
    let name = name.build();
    let mut cert = x509::X509Builder::new().expect("certificate");
    cert.set_version(2).expect("version");
    let serial = BigNum::from_u32(1)
        .and_then(|n| n.to_asn1_integer())
        .expect("serial");
    cert.set_serial_number(&serial).expect("serial");
    cert.set_subject_name(&name).expect("subject");
    cert.set_issuer_name(&name).expect("issuer");
    cert.set_pubkey(&key).expect("public key");
    cert.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("not before");
    cert.set_not_after(&Asn1Time::days_from_now(1).expect("time"))
        .expect("not after");
    let ca = x509::extension::BasicConstraints::new()
        .critical()
        .ca()
        .build()
        .expect("CA");
    cert.append_extension(ca).expect("extension");
    cert.sign(&key, MessageDigest::sha256()).expect("sign");
    String::from_utf8(cert.build().to_pem().expect("PEM")).expect("PEM is text")
}
