//! The chart's alerts and dashboard (charts/jvm-guard/files): `promtool test rules` on synthetic
//! series (tests/alerts/rules.test.yaml), every PromQL expression of the rules and the
//! dashboard parsed by promtool, and a real Prometheus scraping a real `serve` and evaluating
//! the rules. promtool and prometheus: Debian's `prometheus` package (scripts/test.sh installs
//! it).

#[allow(dead_code)]
#[path = "support/process.rs"]
mod process;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use process::{follow_lines, free_port, run_bounded};

const BIN: &str = env!("CARGO_BIN_EXE_jvm-guard");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rules_file() -> PathBuf {
    root().join("charts/jvm-guard/files/prometheus-rules.yaml")
}

/// The binary, or a failure that names the setup step.
fn tool(name: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{name} not found: scripts/test.sh installs it (apt-get install prometheus)"
    );
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn promtool_tests_of_the_alerts_pass() {
    let out = run_bounded(
        Command::new(tool("promtool"))
            .args(["test", "rules", "rules.test.yaml"])
            .current_dir(root().join("tests/alerts")),
        120,
    );
    let report = text(&out.stdout) + &text(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("SUCCESS"), "{report}");
}

/// The dashboard's queries, with Grafana's variables given values Prometheus accepts.
fn dashboard_expressions() -> Vec<(String, String)> {
    let file = root().join("charts/jvm-guard/files/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut found = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            found.push((
                panel["title"].as_str().unwrap_or_default().to_string(),
                expr.replace("$__rate_interval", "5m"),
            ));
        }
    }
    found
}

#[test]
fn every_expression_of_the_rules_and_the_dashboard_parses() {
    let dir = tempfile::tempdir().unwrap();
    let expressions = dashboard_expressions();
    assert!(expressions.len() >= 8, "{expressions:?}");
    // Each dashboard query as a recording rule: `promtool check rules` parses them all and
    // names the one that does not parse.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, (title, expr)) in expressions.iter().enumerate() {
        rules.push_str(&format!(
            "      # {title}\n      - record: dashboard:query_{n}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    let dashboard_rules = dir.path().join("dashboard.rules.yaml");
    std::fs::write(&dashboard_rules, &rules).unwrap();
    let out = run_bounded(
        Command::new(tool("promtool"))
            .args(["check", "rules"])
            .arg(rules_file())
            .arg(&dashboard_rules),
        60,
    );
    let report = text(&out.stdout) + &text(&out.stderr);
    assert!(out.status.success(), "{report}\n{rules}");
    assert!(report.contains("SUCCESS: 5 rules found"), "{report}");
    assert!(
        report.contains(&format!("SUCCESS: {} rules found", expressions.len())),
        "{report}"
    );
}

/// A child killed when dropped, and with the test process.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(command: &mut Command) -> Running {
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Running(
        command
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?}: {e}")),
    )
}

/// A plain-HTTP GET: the body of a 200.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    tcp.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some(unchunk(body));
    }
    Some(body.to_string())
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Prometheus's answer to an API path, once its `data` satisfies `done` (or panics after 60 s).
fn until(prometheus: SocketAddr, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some(body) = get(prometheus, path) {
            last = serde_json::from_str(&body).unwrap_or(Value::Null);
            if done(&last["data"]) {
                return last["data"].clone();
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{path} never as expected; last: {last:#}");
}

#[test]
fn a_real_prometheus_scrapes_serve_and_evaluates_the_alerts() {
    let prometheus_bin = tool("prometheus");
    let dir = tempfile::tempdir().unwrap();
    // A serving certificate that expires in 5 days.
    let out = run_bounded(
        Command::new(BIN)
            .args(["certs", "--days", "5", "--out"])
            .arg(dir.path().join("certs")),
        30,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut serve = Command::new(BIN);
    serve
        .args(["serve", "--dev", "--addr", "127.0.0.1:0"])
        .args(["--admin-addr", "127.0.0.1:0", "--log-format", "json"])
        .arg("--tls-cert")
        .arg(dir.path().join("certs/tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("certs/tls.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut serve = spawn(&mut serve);
    let (logs, lines) = follow_lines(serve.0.stderr.take().unwrap());
    let admin: SocketAddr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("serve did not start:\n{:?}", logs.lock().unwrap()));
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if entry["message"] == "listening" {
            break entry["admin_addr"].as_str().unwrap().parse().unwrap();
        }
    };

    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: jvm-guard\n    static_configs:\n      - targets: \
             ['{admin}']\n",
            rules_file().display()
        ),
    )
    .unwrap();
    let mut prometheus = Command::new(prometheus_bin);
    prometheus
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("prometheus.log")).unwrap(),
        ));
    let _prometheus = spawn(&mut prometheus);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // The scrape works: serve's series are in Prometheus, the target is up.
    let up = until(
        addr,
        "/api/v1/query?query=up%7Bjob%3D%22jvm-guard%22%7D",
        |d| d["result"][0]["value"][1] == "1",
    );
    println!("up: {up}");
    let requests = until(
        addr,
        "/api/v1/query?query=jvm_guard_admission_requests_total",
        |d| d["result"].as_array().is_some_and(|r| r.len() == 8),
    );
    assert!(requests["result"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["value"][1] == "0"));

    // The certificate's alert is pending once a scrape has been evaluated (its `for` is an
    // hour).
    let alerts = until(addr, "/api/v1/alerts", |d| {
        d["alerts"].as_array().is_some_and(|a| !a.is_empty())
    });
    let alert = &alerts["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "JvmGuardCertificateExpiring");
    let description = alert["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains("expires in 4d 23h"),
        "5 days less the seconds since: {description}"
    );
    // Every rule loaded and evaluated without error; the others inactive.
    let rules = until(addr, "/api/v1/rules", |d| {
        d["groups"][0]["rules"].as_array().is_some_and(|r| {
            r.len() == 5
                && r.iter()
                    .all(|rule| rule["lastEvaluation"] != "0001-01-01T00:00:00Z")
        })
    });
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        assert_eq!(rule["health"], "ok", "{rule:#}");
        let expected = if rule["name"] == "JvmGuardCertificateExpiring" {
            "pending"
        } else {
            "inactive"
        };
        assert_eq!(rule["state"], expected, "{rule:#}");
    }
    let _ = serve.0.kill();
}
