#!/usr/bin/env python3
"""Shopstream side by side with Spark Structured Streaming and Kafka Connect.

Driven by scripts/bench-peers.sh, which builds the binaries, installs the peers
(bench/peers/install.sh) and passes their paths in the environment. Standard
library only. Every system runs alone, against the same broker and PostgreSQL:

 1. drain: each system loads the same pre-filled topic into an empty schema of
    its own. Rows/s is taken between the first and the last fact row's
    loaded_at (the transaction time each system stamps); CPU-seconds are all the
    system's processes from launch to the last row, less its start-up CPU (from
    phase 2), plus PostgreSQL's and the broker's over the same time;
 2. steady: each system starts on an empty topic (start-up time and CPU until it
    is ready), then follows a generator at RATE events/s for SECONDS s; p50/p99
    of loaded_at - event_time over the activity rows after the first 5 s;
 3. kill: each system loads the pre-filled topic into a fresh schema, is killed
    with SIGKILL (its whole process group) once half the rows are in, restarted
    with the same configuration, and left to finish; then its rows are compared
    with the generator's summary: lost, duplicated, net revenue.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAUNCHED = []  # every process group started, stopped on the way out whatever happens
CLK = os.sysconf("SC_CLK_TCK")
ENV = os.environ


def log(msg):
    print(f"bench-peers: {msg}", file=sys.stderr, flush=True)


# ---- CPU and memory accounting ---------------------------------------------


def stat(pid):
    """(ppid, session, own ticks, reaped children's ticks) of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[3]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def live_procs():
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                yield int(entry), stat(entry)
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass


def session_ticks(sid):
    """CPU ticks of a process group's live members and of the children they reaped,
    so a process that has exited still counts."""
    return sum(own + reaped for _, (_, s, own, reaped) in live_procs() if s == sid)


def tree_ticks(root):
    """CPU ticks of a process and its live children, and of every child it reaped:
    PostgreSQL's postmaster reaps each backend, so closed connections count."""
    total = 0
    for pid, (ppid, _, own, reaped) in live_procs():
        if pid == root or ppid == root:
            total += own + reaped
    return total


def session_peak_rss_mb(sid):
    total = 0
    for pid, (_, s, _, _) in live_procs():
        if s == sid:
            try:
                with open(f"/proc/{pid}/status") as f:
                    total += next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
            except (FileNotFoundError, StopIteration):
                pass
    return total / 1024


@dataclass
class Cpu:
    """CPU-seconds used since it was made: the system, PostgreSQL and the broker."""

    sid: int
    pg: int
    broker: int
    start: tuple = field(init=False)

    def __post_init__(self):
        self.start = self.read()

    def read(self):
        return session_ticks(self.sid), tree_ticks(self.pg), tree_ticks(self.broker)

    def since(self):
        return tuple((b - a) / CLK for a, b in zip(self.start, self.read()))


# ---- PostgreSQL, Kafka ------------------------------------------------------


def psql(sql, *variables):
    cmd = ["psql", ENV["BENCH_DB_URL"], "-X", "-Atq", "-v", "ON_ERROR_STOP=1"]
    for v in variables:
        cmd += ["-v", v]
    return subprocess.run(cmd, input=sql, capture_output=True, text=True, check=True).stdout.strip()


def create_topic(name, partitions=4):
    subprocess.run(
        ["java", "-XX:TieredStopAtLevel=1", "-cp", f"{ENV['KAFKA_LIBS']}/*", "org.apache.kafka.tools.TopicCommand",
         "--bootstrap-server", ENV["BENCH_BROKERS"], "--create", "--if-not-exists", "--topic", name,
         "--partitions", str(partitions), "--replication-factor", "1"],
        check=True, capture_output=True)


def delete_topics(pattern):
    subprocess.run(
        ["java", "-XX:TieredStopAtLevel=1", "-cp", f"{ENV['KAFKA_LIBS']}/*", "org.apache.kafka.tools.TopicCommand",
         "--bootstrap-server", ENV["BENCH_BROKERS"], "--delete", "--if-exists", "--topic", pattern],
        capture_output=True)


def generate(topic, work, name, *args):
    summary = work / f"{name}.json"
    started = time.time()
    proc = subprocess.run(
        [f"{ENV['BIN']}/shopstream-generator", "--brokers", ENV["BENCH_BROKERS"], "--topic", topic,
         "--instance", "bench", "--summary-file", str(summary), *args],
        stderr=subprocess.DEVNULL)
    if proc.returncode != 0:
        sys.exit(f"bench-peers: the generator exited with {proc.returncode}")
    s = json.loads(summary.read_text())
    if s["delivery_failures"]:
        sys.exit(f"bench-peers: the generator lost {s['delivery_failures']} messages")
    s["started_epoch"] = started
    return s


def expected_rows(summary):
    by_type = summary["events_by_type"]
    return summary["order_lines"], by_type.get("page_view", 0) + by_type.get("add_to_cart", 0)


# ---- the three systems ------------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200, r.read()
    except OSError:
        return False, b""


class System:
    """One system under test: how to start it and where its rows land."""

    name = ""
    key = ""  # in run ids, schema and topic names
    lines = ""  # order-line table
    activity = ""  # activity table
    line_key = "order_id, line_number"

    def __init__(self, work, brokers, db_url):
        self.work, self.brokers, self.db_url = work, brokers, db_url

    def prepare(self, run):
        """Create the schema/tables of one run; return its configuration."""
        raise NotImplementedError

    def command(self, run):
        raise NotImplementedError

    def ready(self, run):
        raise NotImplementedError

    def env(self):
        return dict(ENV)

    def launch(self, run):
        with open(self.work / f"{run['id']}.log", "ab") as logf:
            proc = subprocess.Popen(self.command(run), stdout=logf, stderr=logf, env=self.env(),
                                    start_new_session=True)
        LAUNCHED.append(proc)
        return proc

    def tables(self, schema):
        return f"{schema}.{self.lines}", f"{schema}.{self.activity}"


class Shopstream(System):
    name, key = "Shopstream", "shopstream"
    lines, activity = "fact_sales", "fact_activity"

    def prepare(self, run):
        run["addr"] = f"127.0.0.1:{free_port()}"
        return run  # the worker creates its schema (migrations) itself

    def command(self, run):
        return [f"{ENV['BIN']}/shopstream-worker", "--brokers", self.brokers, "--topic", run["topic"],
                "--schema", run["schema"], "--group", run["id"], "--database-url", self.db_url,
                "--metrics-addr", run["addr"]]

    def ready(self, run):
        return http_ok(f"http://{run['addr']}/readyz")[0]


class Spark(System):
    name, key = "Spark", "spark"
    lines, activity = "fact_sales", "fact_activity"

    def prepare(self, run):
        psql(open(HERE / "spark" / "ddl.sql").read(), f"schema={run['schema']}")
        run["checkpoint"] = str(self.work / f"{run['id']}.checkpoint")
        return run

    def env(self):
        # Spark picks the host's first non-loopback address otherwise.
        return {**ENV, "SPARK_LOCAL_IP": "127.0.0.1"}

    def command(self, run):
        jdbc = (f"jdbc:postgresql://{ENV['PGHOSTPORT']}/{ENV['PGDATABASE']}?user={ENV['PGUSER']}"
                "&reWriteBatchedInserts=true")
        return [ENV["PEERS_PYSPARK_PYTHON"], str(HERE / "spark" / "job.py"), self.brokers, run["topic"], jdbc,
                run["schema"], run["checkpoint"]]

    def ready(self, run):
        # The query records its starting offsets once it runs.
        return (Path(run["checkpoint"]) / "sources" / "0" / "0").exists()


class Connect(System):
    name, key = "Kafka Connect", "connect"
    lines, activity = "order_lines", "activity"

    def prepare(self, run):
        run["rest_port"] = free_port()
        psql(open(HERE / "connect" / "ddl.sql").read(), f"schema={run['schema']}")
        for suffix in ("lines", "activity"):
            create_topic(f"{run['id']}.{suffix}")
        jdbc = (f"jdbc:postgresql://{ENV['PGHOSTPORT']}/{ENV['PGDATABASE']}"
                "?reWriteBatchedInserts=true&stringtype=unspecified")
        values = {"BROKERS": self.brokers, "WORK": str(self.work / run["id"]), "REST_PORT": str(run["rest_port"]),
                  "PLUGINS": ENV["PEERS_DEBEZIUM_PLUGIN_DIR"], "NAME": run["id"], "TOPIC": run["id"],
                  "SCHEMA": run["schema"], "JDBC_URL": jdbc, "DB_USER": ENV["PGUSER"], "DB_PASSWORD": ""}
        (self.work / run["id"]).mkdir()
        run["files"] = []
        for name in ("worker", "lines", "activity"):
            text = (HERE / "connect" / f"{name}.properties").read_text()
            for k, v in values.items():
                text = text.replace(f"@{k}@", v)
            path = self.work / run["id"] / f"{name}.properties"
            path.write_text(text)
            run["files"].append(str(path))
        return run

    def command(self, run):
        run_dir = self.work / run["id"]
        # The launcher settings of Kafka's own bin/connect-standalone.sh.
        connect = ["java", "-Xms256M", "-Xmx2G", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                   "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
                   "-Djava.awt.headless=true", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                   "-cp", f"{ENV['KAFKA_LIBS']}/*", "org.apache.kafka.connect.cli.ConnectStandalone", *run["files"]]
        flatten = ["java", "-Xms256M", "-Xmx1G", "-XX:+UseG1GC", "-cp", ENV["PEERS_FLATTENER_CP"], "Flatten",
                   self.brokers, run["topic"], run["id"], f"{run['id']}-flatten", str(run_dir / "streams")]
        # Both in one process group, so one SIGKILL takes the whole peer down.
        q = lambda argv: " ".join(f"'{a}'" for a in argv)  # noqa: E731
        return ["bash", "-c", f"{q(flatten)} >{run_dir}/flatten.log 2>&1 & exec {q(connect)}"]

    def ready(self, run):
        log_path = self.work / run["id"] / "flatten.log"
        if not log_path.exists() or b"to RUNNING" not in log_path.read_bytes():
            return False
        for suffix in ("lines", "activity"):
            ok, body = http_ok(f"http://127.0.0.1:{run['rest_port']}/connectors/{run['id']}-{suffix}/status")
            if not ok:
                return False
            status = json.loads(body)
            if not status["tasks"] or any(t["state"] != "RUNNING" for t in status["tasks"]):
                return False
        return True


# ---- one run of one system --------------------------------------------------


def wait_for(what, cond, timeout, every=0.1):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            sys.exit(f"bench-peers: timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def exact_rows(system, schema):
    lines, activity = system.tables(schema)
    try:
        return int(psql(f"SELECT (SELECT count(*) FROM {lines}) + (SELECT count(*) FROM {activity})"))
    except subprocess.CalledProcessError:
        return 0  # Shopstream's worker creates its tables as it starts


def wait_rows(system, schema, want, timeout, proc):
    """Wait until the system's fact tables hold `want` rows, or it exits; returns
    whether they do. Exact counts, four a second: the statistics collector's
    counts are cheaper but lag by seconds and count aborted inserts."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if exact_rows(system, schema) >= want:
            return True
        time.sleep(0.25)
    if proc.poll() is not None:
        log(f"{system.name} exited with {proc.returncode} before loading every row (its log: {system.work})")
    return exact_rows(system, schema) >= want


def stop(proc, sig=signal.SIGTERM, timeout=60):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # Children that outlived the group leader (a JVM whose launcher died first).
    for pid, (_, s, _, _) in list(live_procs()):
        if s == proc.pid:
            os.kill(pid, signal.SIGKILL)


def drain(system, topic, want, stamp, cpu_ids):
    key = system.key
    run = system.prepare({"id": f"peers-{stamp}-{key}-drain", "topic": topic, "schema": f"peers_{stamp}_{key}_drain"})
    launched = time.time()
    proc = system.launch(run)
    startup = Cpu(proc.pid, *cpu_ids)
    # Timed from readiness, so every system's start-up (a JVM, Spark's context,
    # the worker's migrations) is reported on its own and not spread over events.
    wait_for(f"{system.name} to be ready", lambda: system.ready(run), 300, every=0.05)
    ready = time.time()
    startup_cpu = startup.since()[0]
    cpu = Cpu(proc.pid, *cpu_ids)
    if not wait_rows(system, run["schema"], want, 1800, proc):
        sys.exit(f"bench-peers: {system.name} did not load {want} rows")
    done = time.time()
    own, pg, broker = cpu.since()
    rss = session_peak_rss_mb(proc.pid)
    stop(proc)
    return {"schema": run["schema"], "startup_s": ready - launched, "startup_cpu": startup_cpu,
            "seconds": done - ready, "rows_s": want / (done - ready), "cpu": own, "pg_cpu": pg,
            "broker_cpu": broker, "peak_rss_mb": rss}


def steady(system, rate, seconds, stamp, cpu_ids):
    key = system.key
    run = system.prepare({"id": f"peers-{stamp}-{key}-steady", "topic": f"peers-{stamp}-{key}-steady",
                          "schema": f"peers_{stamp}_{key}_steady"})
    create_topic(run["topic"])
    launched = time.time()
    proc = system.launch(run)
    cpu = Cpu(proc.pid, *cpu_ids)
    wait_for(f"{system.name} to be ready", lambda: system.ready(run), 300)
    startup_s, startup_cpu = time.time() - launched, cpu.since()[0]
    cpu = Cpu(proc.pid, *cpu_ids)
    summary = generate(run["topic"], system.work, run["id"], "--rate", str(rate), "--duration", f"{seconds}s",
                       "--late-ratio", "0")
    want = sum(expected_rows(summary))
    if not wait_rows(system, run["schema"], want, 600, proc):
        sys.exit(f"bench-peers: {system.name} did not load the steady run's {want} rows")
    own, pg, broker = cpu.since()
    stop(proc)
    _, activity = system.tables(run["schema"])
    # The first 5 s are left out: a JVM's first batches run before its JIT has
    # compiled anything, which says little about a long-running pipeline.
    p50, p99 = psql(
        "SELECT round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM loaded_at - event_time))),"
        " round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM loaded_at - event_time)))"
        f" FROM {activity} WHERE event_time >= to_timestamp({summary['started_epoch'] + 5})").split("|")
    return {"schema": run["schema"], "startup_s": startup_s, "startup_cpu": startup_cpu, "p50_ms": int(p50),
            "p99_ms": int(p99), "cpu": own, "pg_cpu": pg, "broker_cpu": broker, "events": summary["events_total"]}


def kill_restart(system, topic, fill, stamp):
    key = system.key
    run = system.prepare({"id": f"peers-{stamp}-{key}-kill", "topic": topic, "schema": f"peers_{stamp}_{key}_kill"})
    want_lines, want_activity = expected_rows(fill)
    want = want_lines + want_activity
    proc = system.launch(run)
    wait_for(f"{system.name} to load half the rows", lambda: exact_rows(system, run["schema"]) >= want // 2, 1800,
             every=0.25)
    at_kill = exact_rows(system, run["schema"])
    stop(proc, signal.SIGKILL)
    restarted = time.time()
    proc = system.launch(run)
    complete = wait_rows(system, run["schema"], want, 600, proc)
    recovered_s = time.time() - restarted
    stop(proc)
    lines, activity = system.tables(run["schema"])
    n_lines, d_lines, n_act, d_act, net = psql(
        f"SELECT (SELECT count(*) FROM {lines}), (SELECT count(DISTINCT ({system.line_key})) FROM {lines}), "
        f"(SELECT count(*) FROM {activity}), (SELECT count(DISTINCT event_id) FROM {activity}), "
        f"(SELECT coalesce(sum(net_amount), 0) FROM {lines})").split("|")
    lost = (want_lines - int(d_lines)) + (want_activity - int(d_act))
    duplicated = (int(n_lines) - int(d_lines)) + (int(n_act) - int(d_act))
    return {"schema": run["schema"], "rows_at_kill": at_kill, "recovered_s": recovered_s, "complete": complete,
            "lost": lost, "duplicated": duplicated, "net_exact": Decimal(net) == Decimal(fill["net_revenue"])}


# ---- the report ---------------------------------------------------------------


def report(events, rows_per_event, results, rate, seconds):
    head = (f"{'system':<14} {'events/s':>9} {'rows/s':>8} {'CPU-s/M ev':>10} {'+PG+broker':>10} {'RSS MB':>7} "
            f"{'start s':>7} {'p50 ms':>7} {'p99 ms':>7} {'lost':>5} {'dup':>5} {'net ok':>6}")
    out = [head, "-" * len(head)]
    for name, r in results.items():
        d, s, k = r["drain"], r["steady"], r["kill"]
        per_m = d["cpu"] / events * 1e6
        all_m = (d["cpu"] + d["pg_cpu"] + d["broker_cpu"]) / events * 1e6
        lost = str(k["lost"]) + ("" if k["complete"] else "*")
        out.append(f"{name:<14} {d['rows_s'] / rows_per_event:>9,.0f} {d['rows_s']:>8,.0f} {per_m:>10.1f} "
                   f"{all_m:>10.1f} {d['peak_rss_mb']:>7,.0f} {d['startup_s']:>7.1f} {s['p50_ms']:>7} "
                   f"{s['p99_ms']:>7} {lost:>5} {k['duplicated']:>5} {'yes' if k['net_exact'] else 'NO':>6}")
    out += [
        "",
        f"events/s, rows/s, CPU-s per million events: draining {events:,} pre-filled events, from the moment the",
        "system is ready until every fact row is in; CPU-s: the system's own processes, then with PostgreSQL and",
        f"the broker over the same time; start s: launch to ready; p50/p99: loaded_at - event_time at {rate}",
        f"events/s for {seconds} s; lost/dup/net ok: after SIGKILL at half the rows and a restart (* = still short",
        "after 600 s).",
    ]
    for name, r in results.items():
        d, s, k = r["drain"], r["steady"], r["kill"]
        out.append(f"  {name}: drain {d['seconds']:.1f} s, CPU-s own {d['cpu']:.1f}, PostgreSQL {d['pg_cpu']:.1f}, "
                   f"broker {d['broker_cpu']:.1f}; start-up CPU-s {d['startup_cpu']:.1f}; steady CPU-s own "
                   f"{s['cpu']:.1f}, PostgreSQL {s['pg_cpu']:.1f}, broker {s['broker_cpu']:.1f}; killed at "
                   f"{k['rows_at_kill']:,} rows, complete {k['recovered_s']:.1f} s after the restart")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--systems", default="shopstream,spark,connect")
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--keep", action="store_true", help="keep the schemas and topics")
    args = ap.parse_args()
    if args.events < 500_000:
        log(f"note: {args.events} events is below the 500,000 the comparison is specified at")
    classes = {"shopstream": Shopstream, "spark": Spark, "connect": Connect}
    try:
        systems = [classes[s](args.work, ENV["BENCH_BROKERS"], ENV["BENCH_DB_URL"]) for s in args.systems.split(",")]
    except KeyError as e:
        ap.error(f"unknown system {e}; choose from {', '.join(classes)}")
    pg_pid = int(Path(ENV["PG_POSTMASTER_PID_FILE"]).read_text().split()[0])
    cpu_ids = (pg_pid, int(ENV["BROKER_PID"]))
    stamp = str(int(time.time()))
    topic = f"peers-{stamp}-fill"
    create_topic(topic)
    log(f"filling {topic} with {args.events:,} events")
    fill = generate(topic, args.work, "fill", "--rate", "0", "--total", str(args.events))
    want = sum(expected_rows(fill))
    results = {s.name: {} for s in systems}
    try:
        for s in systems:
            log(f"{s.name}: drain of {want:,} fact rows")
            results[s.name]["drain"] = drain(s, topic, want, stamp, cpu_ids)
        for s in systems:
            log(f"{s.name}: steady {args.rate} events/s for {args.seconds} s")
            results[s.name]["steady"] = steady(s, args.rate, args.seconds, stamp, cpu_ids)
        for s in systems:
            log(f"{s.name}: SIGKILL at half the rows, restart")
            results[s.name]["kill"] = kill_restart(s, topic, fill, stamp)
    finally:
        for proc in LAUNCHED:
            stop(proc, signal.SIGKILL)
        if not args.keep:
            schemas = [r[p]["schema"] for r in results.values() for p in r]
            for schema in schemas:
                psql(f"SET client_min_messages = warning; DROP SCHEMA IF EXISTS {schema} CASCADE")
            delete_topics(f"peers-{stamp}-.*")
    args.results.write_text(json.dumps({"events": args.events, "fill": fill, "results": results}, indent=2,
                                       default=str))
    print(report(args.events, want / args.events, results, args.rate, args.seconds))


if __name__ == "__main__":
    main()
