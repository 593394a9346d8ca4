//! A running `rm serve` managed from other commands: imports and ask changes while a deal
//! is in flight, `rm deals --follow`, `/metrics` scraped over HTTP, the control socket
//! refusing bad requests, and commands opening the home themselves when no server runs.
//! Child processes, each with its own home, on 127.0.0.1.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use common::{Server, data, http_get, json, next_json, rm, run, sample, scrape, serve};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A provider home with `config` edits, `data` imported (kubo-v1: 256 KiB blocks) and
/// the ask set; returns the payload CID.
async fn provider_home(home: &std::path::Path, rate: u64, file: &std::path::Path) -> String {
    json(home, &["init"]).await;
    if rate > 0 {
        let config = home.join("config.toml");
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "max_bytes_per_second = 0",
            &format!("max_bytes_per_second = {rate}"),
        );
        std::fs::write(&config, text).unwrap();
    }
    let imported = json(
        home,
        &["import", file.to_str().unwrap(), "--preset", "kubo-v1"],
    )
    .await;
    json(
        home,
        &[
            "ask",
            "--price-per-byte",
            "3",
            "--payment-interval",
            "262144",
            "--interval-increase",
            "262144",
        ],
    )
    .await;
    imported["payload_cid"].as_str().unwrap().to_owned()
}

// While a slow deal is in flight: a second file is imported through the server and the
// price changes. The deal completes at the price it was made at; a new query sees the
// new price; the second file is served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_and_ask_change_while_a_deal_is_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, client) = (dir.path().join("provider"), dir.path().join("client"));
    let first = data(1_000_000);
    let file = dir.path().join("first.bin");
    std::fs::write(&file, &first).unwrap();
    // 256 KiB blocks at 200 kB/s: about five seconds of deal.
    let payload = provider_home(&provider, 200_000, &file).await;
    let server = serve(&provider, "/ip4/127.0.0.1/tcp/0").await;
    let addr = server.addr();
    let mut server = server.drain();
    json(&client, &["init"]).await;

    let out = dir.path().join("out.bin");
    let mut retrieve = rm(
        &client,
        &[
            "--json",
            "retrieve",
            &addr,
            &payload,
            "-o",
            out.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(retrieve.stdout.take().unwrap()).lines();
    // The spending caps come first; then wait until blocks flow.
    let caps = next_json(&mut lines).await;
    assert_eq!(caps["event"], "caps", "{caps}");
    loop {
        let v = next_json(&mut lines).await;
        assert_eq!(
            v["event"], "progress",
            "the deal ended before the test could act: {v}"
        );
        if v["bytes"].as_u64().unwrap() > 0 {
            break;
        }
    }

    // Mid-deal: import and re-price through the running server.
    let second = data(300_000)
        .into_iter()
        .map(|b| b ^ 0x5a)
        .collect::<Vec<_>>();
    let second_file = dir.path().join("second.bin");
    std::fs::write(&second_file, &second).unwrap();
    let imported = json(&provider, &["import", second_file.to_str().unwrap()]).await;
    let second_payload = imported["payload_cid"].as_str().unwrap().to_owned();
    assert_eq!(imported["new"], true);
    let ask = json(&provider, &["ask", "--price-per-byte", "5"]).await;
    assert_eq!(
        (ask["price_per_byte"].as_str(), ask["changed"].as_bool()),
        (Some("5"), Some(true))
    );
    let in_flight = json(&provider, &["deals", "--provider"]).await;
    let status = in_flight["deals"][0]["status"].as_str().unwrap().to_owned();
    assert!(
        !["Completed", "Errored", "Cancelled"].contains(&status.as_str()),
        "the deal was no longer in flight when the ask changed: {status}"
    );

    // The deal in flight completes at the price it was made at.
    let done = loop {
        let v = next_json(&mut lines).await;
        if v["event"] == "done" {
            break v;
        }
    };
    assert_eq!(done["status"], "Completed", "{done}");
    let bytes = done["bytes"].as_u64().unwrap();
    assert_eq!(done["paid"], (3 * bytes).to_string());
    assert_eq!(std::fs::read(&out).unwrap(), first);
    let _ = retrieve.wait().await;

    // New queries see the new ask; the file imported while serving is served.
    let q = json(&client, &["query", &addr, &payload]).await;
    assert_eq!(q["price_per_byte"], "5", "{q}");
    let q = json(&client, &["query", &addr, &second_payload]).await;
    assert_eq!(
        (q["status"].as_str(), q["price_per_byte"].as_str()),
        (Some("Available"), Some("5"))
    );
    let out2 = dir.path().join("out2.bin");
    let done = json(
        &client,
        &[
            "retrieve",
            &addr,
            &second_payload,
            "-o",
            out2.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(done["status"], "Completed");
    assert_eq!(
        done["paid"],
        (5 * done["bytes"].as_u64().unwrap()).to_string()
    );
    assert_eq!(std::fs::read(&out2).unwrap(), second);
    assert_eq!(Server::interrupt(&mut server).await, Some(0));
}

// `rm deals --follow` prints the listing, then each status change of a deal as it runs,
// up to Completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deals_follow_streams_status_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, client) = (dir.path().join("provider"), dir.path().join("client"));
    let file = dir.path().join("data.bin");
    std::fs::write(&file, data(600_000)).unwrap();
    let payload = provider_home(&provider, 0, &file).await;
    let server = serve(&provider, "/ip4/127.0.0.1/tcp/0").await;
    let addr = server.addr();
    let mut server = server.drain();

    let mut follow = rm(&provider, &["--json", "deals", "--follow", "--provider"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let listed = next_json(&mut lines).await;
    assert_eq!(
        (listed["event"].as_str(), listed["count"].as_u64()),
        (Some("listed"), Some(0))
    );

    json(&client, &["init"]).await;
    let out = dir.path().join("out.bin");
    let done = json(
        &client,
        &["retrieve", &addr, &payload, "-o", out.to_str().unwrap()],
    )
    .await;
    assert_eq!(done["status"], "Completed");

    let mut statuses = Vec::new();
    loop {
        let v = next_json(&mut lines).await;
        assert_eq!(v["event"], "deal", "{v}");
        assert_eq!(
            (v["side"].as_str(), v["deal_id"].as_u64()),
            (Some("provider"), done["deal_id"].as_u64())
        );
        assert_eq!(v["payload_cid"].as_str(), Some(payload.as_str()));
        statuses.push(v["status"].as_str().unwrap().to_owned());
        if v["status"] == "Completed" {
            assert_eq!(v["paid"], done["paid"], "{v}");
            assert_eq!(v["bytes"], done["bytes"], "{v}");
            break;
        }
    }
    // One line per change: never the same status twice in a row; from New to the end.
    assert_eq!(
        statuses.first().map(String::as_str),
        Some("New"),
        "{statuses:?}"
    );
    assert!(statuses.windows(2).all(|w| w[0] != w[1]), "{statuses:?}");
    for seen in ["Ongoing", "FundsNeededLastPayment"] {
        assert!(
            statuses.iter().any(|s| s == seen),
            "{seen} not in {statuses:?}"
        );
    }
    // The server stopping ends the follow with a last line.
    assert_eq!(Server::interrupt(&mut server).await, Some(0));
    let end = next_json(&mut lines).await;
    assert_eq!(end["event"], "stopped", "{end}");
    let status = tokio::time::timeout(Duration::from_secs(30), follow.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

// `/metrics` over a plain HTTP request, parsed: a completed deal moves the counters by
// exactly what it moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_deal() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, client) = (dir.path().join("provider"), dir.path().join("client"));
    let file = dir.path().join("data.bin");
    std::fs::write(&file, data(700_000)).unwrap();
    let payload = provider_home(&provider, 0, &file).await;
    // Sectors read as sealed ones are: the deal unseals the piece, so unseals are counted
    // (with direct reads, the default, blocks are read in place and nothing unseals).
    let config = provider.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("direct_reads = true"), "{text}");
    std::fs::write(
        &config,
        text.replace("direct_reads = true", "direct_reads = false"),
    )
    .unwrap();
    let server = serve(&provider, "/ip4/127.0.0.1/tcp/0").await;
    let url = server.metrics_url();
    let addr = server.addr();
    let mut server = server.drain();

    let before = scrape(&url).await;
    let completed = "rm_deals_completed_total{side=\"provider\"}";
    assert_eq!(sample(&before, completed), 0.0);
    assert_eq!(sample(&before, "rm_deal_sent_bytes_total"), 0.0);
    assert!(before.contains_key("rm_connected_peers"), "{before:?}");

    json(&client, &["init"]).await;
    let out = dir.path().join("out.bin");
    let done = json(
        &client,
        &["retrieve", &addr, &payload, "-o", out.to_str().unwrap()],
    )
    .await;
    assert_eq!(done["status"], "Completed");
    let bytes = done["bytes"].as_u64().unwrap() as f64;
    let paid: f64 = done["paid"].as_str().unwrap().parse().unwrap();
    let vouchers = done["vouchers"].as_array().unwrap().len() as f64;

    // The counters follow the provider's deal records; the client may end a moment
    // before the metrics task has seen the last one.
    let mut after = scrape(&url).await;
    for _ in 0..50 {
        if sample(&after, completed) > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = scrape(&url).await;
    }
    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(moved(completed), 1.0);
    assert_eq!(moved("rm_deals_started_total{side=\"provider\"}"), 1.0);
    assert_eq!(moved("rm_deal_sent_bytes_total"), bytes);
    assert_eq!(moved("rm_funds_received_attofil_total"), paid);
    assert_eq!(moved("rm_vouchers_received_total"), vouchers);
    assert_eq!(
        moved("rm_queries_total{side=\"provider\",status=\"available\"}"),
        1.0
    );
    assert_eq!(
        moved("rm_query_duration_seconds_count{side=\"provider\"}"),
        1.0
    );
    assert_eq!(moved("rm_unseals_total{result=\"ok\"}"), 1.0);
    assert_eq!(moved("rm_unseal_duration_seconds_count"), 1.0);
    assert!(sample(&after, "rm_unseal_duration_seconds_sum") > 0.0);
    assert_eq!(
        moved("rm_network_deal_streams_total{direction=\"inbound\"}"),
        1.0
    );
    // Nothing in flight once it ended.
    let in_flight: f64 = after
        .iter()
        .filter(|(k, _)| k.starts_with("rm_deals_in_flight"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(in_flight, 0.0);
    // A control request is counted too (the scrape after it sees it).
    json(&provider, &["ask"]).await;
    let later = scrape(&url).await;
    assert_eq!(
        sample(
            &later,
            "rm_control_requests_total{op=\"ask\",result=\"ok\"}"
        ),
        1.0
    );
    // Anything else is not found.
    let (code, _, _) = http_get(&url.replace("/metrics", "/nothing")).await;
    assert_eq!(code, 404);
    assert_eq!(Server::interrupt(&mut server).await, Some(0));
}

/// Sends `bytes` to the control socket and reads its answer (every line until it closes).
async fn control(socket: &std::path::Path, bytes: &[u8]) -> Vec<Value> {
    let mut s = UnixStream::connect(socket).await.unwrap();
    // A reset is what a server closing on unread input may give; the answer came first.
    let _ = s.write_all(bytes).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("the server answers and closes within 30 s");
    String::from_utf8(raw)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

// Oversized, garbage, unknown and late requests each get one error line and a closed
// connection; the server goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_socket_refuses_bad_requests_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("provider");
    json(&home, &["init"]).await;
    let server = serve(&home, "/ip4/127.0.0.1/tcp/0").await;
    let socket = std::path::PathBuf::from(server.listening["control_socket"].as_str().unwrap());
    let mut server = server.drain();
    assert_eq!(socket, home.join("control.sock"));
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let kind = |replies: &[Value]| {
        assert_eq!(replies.len(), 1, "{replies:?}");
        replies[0]["error"]["kind"].as_str().unwrap().to_owned()
    };
    // 1 MiB with no newline: refused after 64 KiB.
    assert_eq!(
        kind(&control(&socket, &vec![b'x'; 1 << 20]).await),
        "too_large"
    );
    assert_eq!(kind(&control(&socket, b"hello\n").await), "bad_request");
    assert_eq!(
        kind(&control(&socket, b"{\"op\":\"format_disk\"}\n").await),
        "bad_request"
    );
    assert_eq!(
        kind(
            &control(
                &socket,
                b"{\"op\":\"ask\",\"price_per_byte\":\"-1 FIL\",\"x\":1}\n"
            )
            .await
        ),
        "bad_request"
    );
    assert_eq!(
        kind(&control(&socket, &[0xff, 0xfe, 0, 1, b'\n']).await),
        "bad_request"
    );
    // A request that never ends its line: refused when the request time is up.
    let started = std::time::Instant::now();
    assert_eq!(kind(&control(&socket, b"{\"op\":").await), "timeout");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    // A request that fails after parsing is an error of kind "failed".
    let failed = control(
        &socket,
        b"{\"op\":\"fund\",\"channel\":\"nonsense\",\"amount\":\"1\"}\n",
    )
    .await;
    assert_eq!(kind(&failed), "failed");
    assert!(
        failed[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nonsense")
    );

    // Still serving: a good request over the socket, and a command.
    let good = control(&socket, b"{\"op\":\"ask\"}\n").await;
    assert_eq!(good.len(), 1);
    assert_eq!(good[0]["done"]["price_per_byte"], "2", "{good:?}");
    let ask = json(&home, &["ask"]).await;
    assert_eq!(ask["changed"], false);
    assert_eq!(Server::interrupt(&mut server).await, Some(0));
}

// With no server, commands open the home themselves, also when a killed server left its
// socket behind; a new server replaces that socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_open_the_home_when_no_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("node");
    json(&home, &["init"]).await;
    let lorem = common::lorem();
    let check = async |home: &std::path::Path, price: &str| {
        let ask = json(home, &["ask", "--price-per-byte", price]).await;
        assert_eq!(ask["price_per_byte"], price);
        let imported = json(home, &["import", lorem.to_str().unwrap()]).await;
        assert!(imported["piece_cid"].as_str().unwrap().starts_with("baga"));
        let pieces = json(home, &["pieces"]).await;
        assert_eq!(pieces["pieces"][0]["piece_cid"], imported["piece_cid"]);
        let deals = json(home, &["deals"]).await;
        assert_eq!(deals["deals"], serde_json::json!([]));
        let fund = json(home, &["fund"]).await;
        assert!(fund["wallet"].as_str().unwrap().starts_with('f'));
        // Nothing to follow without a server: the listing, then a clear error.
        let (code, out, err) = run(home, &["deals", "--follow"]).await;
        assert_eq!(code, 1, "{out}{err}");
        assert!(out.contains("listed"), "{out}");
        assert!(err.contains("no `rm serve` runs"), "{err}");
    };
    check(&home, "4").await;

    // A server killed with SIGKILL leaves its socket; commands still open the home.
    let server = serve(&home, "/ip4/127.0.0.1/tcp/0").await;
    let mut child = server.drain();
    child.start_kill().unwrap();
    let _ = child.wait().await;
    assert!(home.join("control.sock").exists());
    check(&home, "6").await;

    // A new server takes over the stale socket and answers on it.
    let server = serve(&home, "/ip4/127.0.0.1/tcp/0").await;
    let mut server = server.drain();
    let ask = json(&home, &["ask"]).await;
    assert_eq!(ask["price_per_byte"], "6");
    // Pieces are listed, shown and removed through the server too.
    let pieces = json(&home, &["pieces"]).await;
    let piece = pieces["pieces"][0]["piece_cid"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = json(&home, &["pieces", "show", &piece]).await;
    assert_eq!(shown["piece_cid"], piece.as_str());
    assert_eq!(shown["readers"], 0);
    let removed = json(&home, &["pieces", "remove", &piece]).await;
    assert_eq!(removed["piece_cid"], piece.as_str());
    assert!(removed["blocks"].as_u64().unwrap() > 0, "{removed}");
    let pieces = json(&home, &["pieces"]).await;
    assert_eq!(pieces["pieces"], serde_json::json!([]));
    let (code, out, err) = run(&home, &["pieces", "show", &piece]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(Server::interrupt(&mut server).await, Some(0));
    assert!(!home.join("control.sock").exists());
}

/// `rm serve` keeps one malloc arena per core: it starts again in place (same process id)
/// with `MALLOC_ARENA_MAX` set to the number of cores, unless the operator set it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test]
async fn serve_keeps_one_malloc_arena_per_core_unless_told_otherwise() {
    let home = tempfile::tempdir().unwrap();
    assert_eq!(run(home.path(), &["init"]).await.0, 0);
    let cores = std::thread::available_parallelism().unwrap().to_string();
    for (set, expected) in [(None, cores.as_str()), (Some("5"), "5")] {
        let mut command = rm(
            home.path(),
            &[
                "--json",
                "serve",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--no-http",
                "--no-metrics",
            ],
        );
        command.env_remove("MALLOC_ARENA_MAX");
        if let Some(value) = set {
            command.env("MALLOC_ARENA_MAX", value);
        }
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let pid = child.id().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let listening = next_json(&mut lines).await;
        assert_eq!(listening["event"], "listening");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let values: Vec<&[u8]> = environ
            .split(|b| *b == 0)
            .filter_map(|v| v.strip_prefix(b"MALLOC_ARENA_MAX=".as_slice()))
            .collect();
        assert_eq!(values, [expected.as_bytes()], "set {set:?}");
        assert_eq!(Server::interrupt(&mut child).await, Some(0));
    }
}
