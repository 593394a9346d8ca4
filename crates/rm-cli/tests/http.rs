//! HTTP retrieval as a user runs it: `rm serve` answering a plain HTTP client and
//! `rm fetch`, and `rm fetch` killed with SIGKILL and run again. Child processes, each
//! with its own home, on 127.0.0.1.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const RM: &str = env!("CARGO_BIN_EXE_rm");

fn rm(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(RM);
    c.args(args)
        .env("RM_HOME", home)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// Runs `rm --json <args>` to the end (at most 120 s), expects success, returns the last
/// JSON line.
async fn json(home: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let output = tokio::time::timeout(Duration::from_secs(120), rm(home, &all).output())
        .await
        .unwrap_or_else(|_| panic!("rm {args:?} did not finish in 120 s"))
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "rm {args:?}: {out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(out.lines().last().expect("a result line")).unwrap()
}

/// `rm serve` with HTTP on a free port; returns the child and its "listening" line.
async fn serve(home: &Path) -> (Child, Value) {
    let mut child = rm(
        home,
        &[
            "--json",
            "serve",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
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
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("rm serve printed nothing in 60 s")
        .unwrap()
        .expect("rm serve exited");
    let v: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["event"], "listening");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, v)
}

/// A plain HTTP/1.1 GET (no client library beyond TCP): status line, headers, body.
async fn http_get(url: &str, path: &str, accept: &str) -> (String, String, Vec<u8>) {
    let host = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: {host}\r\naccept: {accept}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let status = head.lines().next().unwrap_or("").to_owned();
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

fn data(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// The README's HTTP walkthrough: a CAR from `rm serve` that rm-blockio's verifying reader
// accepts, and `rm fetch` giving a byte-identical file, by URL and by libp2p address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rm_serve_answers_http_and_rm_fetch_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, client) = (dir.path().join("provider"), dir.path().join("client"));
    let original = data(3_000_000);
    let file = dir.path().join("data.bin");
    std::fs::write(&file, &original).unwrap();
    json(&provider, &["init"]).await;
    let imported = json(&provider, &["import", file.to_str().unwrap()]).await;
    let payload = imported["payload_cid"].as_str().unwrap().to_owned();
    let (mut server, listening) = serve(&provider).await;
    let url = listening["http_urls"][0].as_str().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // curl -H 'Accept: application/vnd.ipld.car' http://…/ipfs/<cid>
    let (status, head, body) = http_get(
        &url,
        &format!("/ipfs/{payload}"),
        "application/vnd.ipld.car",
    )
    .await;
    assert!(status.contains("200"), "{head}");
    assert!(
        head.contains("application/vnd.ipld.car; version=1; order=dfs"),
        "{head}"
    );
    let store = rm_blockio::MemoryBlockstore::new();
    let roots = rm_blockio::car::import(&body[..], &store).unwrap();
    assert_eq!(roots[0].to_string(), payload);
    let mut out = Vec::new();
    rm_blockio::unixfs::export_file(&store, &roots[0], &mut out).unwrap();
    assert_eq!(out, original);
    // The piece, with a range.
    let piece = imported["piece_cid"].as_str().unwrap();
    let (status, _, part) = http_get(&url, &format!("/piece/{piece}"), "*/*").await;
    assert!(status.contains("200"));
    assert!(part.len() >= body.len());

    json(&client, &["init"]).await;
    let target = dir.path().join("fetched.bin");
    let done = json(
        &client,
        &["fetch", &url, &payload, "-o", target.to_str().unwrap()],
    )
    .await;
    assert_eq!(done["event"], "done");
    assert_eq!(std::fs::read(&target).unwrap(), original);
    // By the provider's libp2p address: its /http address comes with identify.
    let peer_addr = listening["addrs"][0].as_str().unwrap();
    let again = dir.path().join("fetched-again.bin");
    let by_peer = json(
        &client,
        &["fetch", peer_addr, &payload, "-o", again.to_str().unwrap()],
    )
    .await;
    assert_eq!(by_peer["event"], "done");
    assert_eq!(std::fs::read(&again).unwrap(), original);
    // A CAR of a byte range.
    let car = dir.path().join("range.car");
    let ranged = json(
        &client,
        &[
            "fetch",
            &url,
            &payload,
            "--entity-bytes",
            "1000000:1999999",
            "--car",
            car.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(ranged["event"], "done");
    let summary = rm_blockio::car::inspect(&std::fs::read(&car).unwrap()[..]).unwrap();
    assert!(summary.sections.len() < 5, "only the blocks of the range");
    server.kill().await.unwrap();
}

/// A TCP proxy that passes responses on at `rate` bytes per second and counts them.
async fn slow_proxy(upstream: String, rate: u64) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let counted = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&counted);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                let mut buf = vec![0u8; 32 << 10];
                let started = std::time::Instant::now();
                let mut sent = 0u64;
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    sent += n as u64;
                    count.fetch_add(n as u64, Ordering::SeqCst);
                    let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            });
        }
    });
    (url, counted)
}

// `rm fetch` killed with SIGKILL mid-file and run again: the same file, and the bytes
// downloaded over both runs are the file plus at most one block (and framing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_fetch_resumes_without_downloading_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, client) = (dir.path().join("provider"), dir.path().join("client"));
    let original = data(8 << 20); // eight 1 MiB leaves (the default layout)
    let file = dir.path().join("data.bin");
    std::fs::write(&file, &original).unwrap();
    json(&provider, &["init"]).await;
    let imported = json(&provider, &["import", file.to_str().unwrap()]).await;
    let payload = imported["payload_cid"].as_str().unwrap().to_owned();
    let (mut server, listening) = serve(&provider).await;
    let url = listening["http_urls"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_owned();
    let (proxy, downloaded) = slow_proxy(url, 2 << 20).await;

    json(&client, &["init"]).await;
    let target = dir.path().join("out.bin");
    let args = [
        "--json",
        "fetch",
        proxy.as_str(),
        payload.as_str(),
        "-o",
        target.to_str().unwrap(),
    ];
    let mut first = rm(&client, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("progress within 60 s")
            .unwrap()
            .expect("rm fetch ended before it could be killed");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["event"], "progress",
            "finished before it could be killed: {line}"
        );
        if v["bytes"].as_u64().unwrap_or(0) >= 3 << 20 {
            break;
        }
    }
    first.start_kill().unwrap(); // SIGKILL
    let _ = first.wait().await;
    // The proxy may still push a chunk into the dead connection before it notices.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = downloaded.load(Ordering::SeqCst);
    assert!(
        before < original.len() as u64,
        "killed mid-file at {before} bytes"
    );

    let done = json(&client, &args[1..]).await;
    assert_eq!(done["event"], "done", "{done}");
    assert!(done["resumed_from"].as_u64().unwrap() >= 3, "{done}");
    assert_eq!(
        std::fs::read(&target).unwrap(),
        original,
        "identical output"
    );
    let total = downloaded.load(Ordering::SeqCst);
    let requests = 1 + done["requests"].as_u64().unwrap();
    // Everything on the wire, HTTP headers included: the file; again what the killed run
    // had not stored (rm-http's design limit: the batch being written and the block
    // being received, here a 1 MiB leaf each, as the blocks not yet queued are fewer than
    // one leaf); and per request a response head and CAR header (under 1 KiB).
    let bound = original.len() as u64 + 2 * (1 << 20) + 1024 * requests;
    println!(
        "resume: file {} bytes; downloaded {before} before the kill, {} after, {total} in all \
         ({requests} requests); bound {bound}",
        original.len(),
        total - before
    );
    assert!(total <= bound, "{total} > {bound}");
    server.kill().await.unwrap();
}
