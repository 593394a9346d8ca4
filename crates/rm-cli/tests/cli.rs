//! The `rm` binary as a user runs it: child processes, each with its own home, talking
//! over libp2p on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const RM: &str = env!("CARGO_BIN_EXE_rm");

fn lorem() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rm-e2e/testdata/lorem.txt")
}

/// `rm <args>` with `RM_HOME=home`.
fn rm(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(RM);
    c.args(args)
        .env("RM_HOME", home)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

/// Runs `rm <args>` to the end (at most 120 s); returns (exit code, stdout, stderr).
async fn run(home: &Path, args: &[&str]) -> (i32, String, String) {
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
async fn json(home: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = run(home, &all).await;
    assert_eq!(code, 0, "rm {args:?}: {out}{err}");
    serde_json::from_str(out.lines().last().expect("a result line")).unwrap()
}

/// A free 127.0.0.1 port (free now; the provider binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `rm serve --listen <listen>` until the test ends; returns the child and the printed
/// multiaddr of the provider.
async fn serve(home: &Path, listen: &str) -> (Child, String) {
    let mut child = rm(
        home,
        &[
            "--json",
            "serve",
            "--listen",
            listen,
            "--http-listen",
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
    let v: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["event"], "listening");
    let addr = v["addrs"][0].as_str().unwrap().to_owned();
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

// The README's two-terminal walkthrough, command for command (the port is a free one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_works() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, client) = (dir.path().join("provider"), dir.path().join("client"));
    let lorem = lorem();
    let lorem = lorem.to_str().unwrap();

    // Terminal 1.
    let (code, out, err) = run(&provider, &["init"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("peer id"), "{out}");
    let (code, out, err) = run(&provider, &["import", lorem]).await;
    assert_eq!(code, 0, "{out}{err}");
    let payload = out
        .lines()
        .find_map(|l| l.strip_prefix("payload  "))
        .expect("import prints the payload CID")
        .trim()
        .to_owned();
    assert!(out.contains("piece    baga"), "{out}");
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let (mut server, addr) = serve(&provider, &listen).await;
    assert!(
        addr.starts_with(&listen) && addr.contains("/p2p/12D3Koo"),
        "{addr}"
    );

    // Terminal 2.
    let (code, out, err) = run(&client, &["init"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let target = dir.path().join("lorem.txt");
    let (code, out, err) = run(
        &client,
        &["retrieve", &addr, &payload, "-o", target.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("retrieved"), "{out}");
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(lorem).unwrap()
    );

    // The other commands, as scripts see them.
    let q = json(&client, &["query", &addr, &payload]).await;
    assert_eq!(q["status"], "Available");
    assert_eq!(q["min_price_per_byte"], "2"); // go-fil-markets' default ask
    let deals = json(&client, &["deals", "--client"]).await;
    let deal = &deals["deals"][0];
    assert_eq!(deal["status"], "Completed");
    assert_eq!(deal["bytes"], 19_000); // lorem.txt in 1 MiB chunks: one raw block
    assert_eq!(deal["paid"], "38000"); // 2 attoFIL × 19,000 bytes
    let fund = json(&client, &["fund"]).await;
    assert_eq!(fund["channels"][0]["committed"], "38000");
    let missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let (code, out, _) = run(&client, &["--json", "query", &addr, missing]).await;
    assert_eq!(code, 3, "{out}");

    // A provider known by its peer id only is found on the DHT, joined through the
    // bootstrap peers of config.toml (here the provider itself).
    let config = client.join("config.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("bootstrap = []", &format!("bootstrap = [\"{addr}\"]"));
    std::fs::write(&config, text).unwrap();
    let peer_id = addr.rsplit('/').next().unwrap();
    let q = json(&client, &["query", peer_id, &payload]).await;
    assert_eq!(q["status"], "Available", "{q}");

    // While serving, the provider's home is in use: a clear error.
    let (code, _, err) = run(&provider, &["ask"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("in use by another rm process"), "{err}");
    // Ctrl-C (SIGINT) stops the server cleanly.
    let pid = server.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .expect("rm serve stops within 30 s of Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let provider_deals = json(&provider, &["deals", "--provider"]).await;
    assert_eq!(provider_deals["deals"][0]["status"], "Completed");
    assert_eq!(provider_deals["deals"][0]["paid"], "38000");
}

// `rm retrieve` killed with SIGKILL mid-deal and run again completes the same deal and
// pays exactly what the data costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_retrieve_resumes_and_pays_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, client) = (dir.path().join("provider"), dir.path().join("client"));
    let data: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = dir.path().join("data.bin");
    std::fs::write(&file, &data).unwrap();

    json(&provider, &["init"]).await;
    // A slow provider (256 KiB blocks at 200 kB/s), so the client can be killed mid-deal.
    let config = provider.join("config.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_bytes_per_second = 0", "max_bytes_per_second = 200000");
    std::fs::write(&config, text).unwrap();
    let imported = json(
        &provider,
        &["import", file.to_str().unwrap(), "--preset", "kubo-v1"],
    )
    .await;
    let payload = imported["payload_cid"].as_str().unwrap().to_owned();
    json(
        &provider,
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
    let (mut server, addr) = serve(&provider, "/ip4/127.0.0.1/tcp/0").await;

    json(&client, &["init"]).await;
    let out = dir.path().join("out.bin");
    let args = [
        "--json",
        "retrieve",
        &addr,
        &payload,
        "-o",
        out.to_str().unwrap(),
    ];
    let mut first = rm(&client, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let mut seen = 0u64;
    while seen == 0 {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("progress within 60 s")
            .unwrap()
            .expect("rm retrieve ended before any progress");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_ne!(
            v["event"],
            Value::Null,
            "finished before it could be killed: {line}"
        );
        seen = v["bytes"].as_u64().unwrap_or(0);
    }
    assert!(seen < data.len() as u64, "killed mid-deal at {seen} bytes");
    first.start_kill().unwrap(); // SIGKILL
    let _ = first.wait().await;

    // Run again: the same deal resumes and completes.
    let done = json(&client, &args[1..]).await;
    assert_eq!(done["status"], "Completed", "{done}");
    let bytes = done["bytes"].as_u64().unwrap();
    assert!(bytes > data.len() as u64); // the file plus its root node
    assert_eq!(done["total_paid"], (3 * bytes).to_string());
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let deals = json(&client, &["deals", "--client"]).await;
    assert_eq!(
        deals["deals"].as_array().unwrap().len(),
        1,
        "one deal, resumed: {deals}"
    );
    server.kill().await.unwrap();
    let _ = server.wait().await;
    let pdeals = json(&provider, &["deals", "--provider"]).await;
    assert_eq!(pdeals["deals"][0]["status"], "Completed");
    assert_eq!(pdeals["deals"][0]["paid"], (3 * bytes).to_string());
}

// Terms over a spending cap are refused before any deal is made or channel funded; a
// flag raises the cap for one retrieval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terms_over_a_cap_are_refused_before_anything_is_paid() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, client) = (dir.path().join("provider"), dir.path().join("client"));
    let file = dir.path().join("small.txt");
    std::fs::write(&file, b"a small file, dearly priced").unwrap();
    json(&provider, &["init"]).await;
    let imported = json(&provider, &["import", file.to_str().unwrap()]).await;
    let payload = imported["payload_cid"].as_str().unwrap().to_owned();
    // 2,000,000 attoFIL per byte: over the default cap of 1,000,000.
    json(&provider, &["ask", "--price-per-byte", "2000000"]).await;
    let (mut server, addr) = serve(&provider, "/ip4/127.0.0.1/tcp/0").await;
    json(&client, &["init"]).await;
    let out = dir.path().join("out.txt");
    let out = out.to_str().unwrap();

    let (code, stdout, err) = run(&client, &["retrieve", &addr, &payload, "-o", out]).await;
    assert_eq!(code, 1, "{stdout}{err}");
    assert!(
        err.contains("spending caps: 1000000 attoFIL per byte"),
        "the caps are printed: {err}"
    );
    assert!(
        err.contains("price per byte asked, 0.000000000002 FIL, is over the cap"),
        "{err}"
    );
    let deals = json(&client, &["deals", "--client"]).await;
    assert_eq!(deals["deals"].as_array().unwrap().len(), 0, "{deals}");
    let funds = json(&client, &["fund"]).await;
    assert_eq!(
        funds["channels"].as_array().map_or(0, Vec::len),
        0,
        "{funds}"
    );

    // Raised for this retrieval: it goes through.
    let done = json(
        &client,
        &[
            "retrieve",
            &addr,
            &payload,
            "-o",
            out,
            "--max-price",
            "2000000",
        ],
    )
    .await;
    assert_eq!(done["status"], "Completed", "{done}");
    server.kill().await.unwrap();
    let _ = server.wait().await;
}

#[tokio::test]
async fn mistakes_get_one_sentence_and_an_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("nothing");
    let (code, _, err) = run(&home, &["deals"]).await;
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: ") && err.contains("run `rm init` first"),
        "{err}"
    );
    let (code, _, _) = run(&home, &["retrieve"]).await;
    assert_eq!(code, 2, "usage errors exit 2");
    json(&home, &["init"]).await;
    let again = json(&home, &["init"]).await;
    assert_eq!(again["created"], false);
    let (code, out, _) = run(&home, &["--json", "query", "/ip4/127.0.0.1/tcp/1", "bafy"]).await;
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["error"].as_str().unwrap().contains("p2p"), "{v}");
}
