//! What the `rm` binary's tests share: running it as a child process with a home, and
//! `rm serve` in the background. Everything on 127.0.0.1, every wait bounded.

#![allow(dead_code)] // each test file uses its own part

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

pub(crate) const RM: &str = env!("CARGO_BIN_EXE_rm");

pub(crate) fn lorem() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rm-e2e/testdata/lorem.txt")
}

/// `rm <args>` with `RM_HOME=home`.
pub(crate) fn rm(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(RM);
    c.args(args)
        .env("RM_HOME", home)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// Runs `rm <args>` to the end (at most 120 s); returns (exit code, stdout, stderr).
pub(crate) async fn run(home: &Path, args: &[&str]) -> (i32, String, String) {
    let output = tokio::time::timeout(Duration::from_secs(120), rm(home, args).output())
        .await
        .unwrap_or_else(|_| panic!("rm {args:?} did not finish in 120 s"))
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `rm --json <args>`, expects success, returns the last JSON line.
pub(crate) async fn json(home: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = run(home, &all).await;
    assert_eq!(code, 0, "rm {args:?}: {out}{err}");
    serde_json::from_str(out.lines().last().expect("a result line")).unwrap()
}

/// A free 127.0.0.1 port (free now; the provider binds it next).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `rm --json serve`: the child, its "listening" line, and its later lines.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) listening: Value,
    pub(crate) lines: Lines<BufReader<ChildStdout>>,
}

impl Server {
    /// The printed multiaddr of the provider.
    pub(crate) fn addr(&self) -> String {
        self.listening["addrs"][0].as_str().unwrap().to_owned()
    }

    /// The printed metrics URL.
    pub(crate) fn metrics_url(&self) -> String {
        self.listening["metrics_url"].as_str().unwrap().to_owned()
    }

    /// Keeps draining its output so it never blocks on a full pipe.
    pub(crate) fn drain(mut self) -> Child {
        tokio::spawn(async move { while let Ok(Some(_)) = self.lines.next_line().await {} });
        self.child
    }

    /// Stops it with SIGINT and waits (at most 30 s); returns its exit code.
    pub(crate) async fn interrupt(child: &mut Child) -> Option<i32> {
        let pid = child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("rm serve stops within 30 s of Ctrl-C")
            .unwrap()
            .code()
    }
}

/// `rm --json serve --listen <listen>` with HTTP and metrics on free 127.0.0.1 ports.
pub(crate) async fn serve(home: &Path, listen: &str) -> Server {
    let mut child = rm(
        home,
        &[
            "--json",
            "serve",
            "--listen",
            listen,
            "--http-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("rm serve printed nothing in 60 s")
        .unwrap()
        .expect("rm serve exited");
    let listening: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(listening["event"], "listening");
    Server {
        child,
        listening,
        lines,
    }
}

/// The next JSON line of a child's output, within 60 s.
pub(crate) async fn next_json(lines: &mut Lines<BufReader<ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("a line within 60 s")
        .unwrap()
        .expect("the process ended");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

/// A plain HTTP/1.1 GET over TCP (no client library): (status code, headers, body).
pub(crate) async fn http_get(url: &str) -> (u16, String, String) {
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("an HTTP answer within 30 s")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (code, head.to_owned(), body)
}

fn dechunk(mut b: &str) -> String {
    let mut out = String::new();
    loop {
        let eol = b.find("\r\n").unwrap();
        let n = usize::from_str_radix(b[..eol].trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// Parses the Prometheus / OpenMetrics text format: every sample as
/// `name{labels}` → value (labels as printed).
pub(crate) fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in {line:?}"));
        out.insert(series.to_owned(), value);
    }
    out
}

/// Scrapes `url` and parses it; checks the status and the content type.
pub(crate) async fn scrape(url: &str) -> HashMap<String, f64> {
    let (code, head, body) = http_get(url).await;
    assert_eq!(code, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    parse_metrics(&body)
}

/// A sample's value, 0 when absent (a labelled counter appears when first counted).
pub(crate) fn sample(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

/// `len` pseudo-random bytes.
pub(crate) fn data(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}
