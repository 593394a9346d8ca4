//! Disk space through the `rm` binary: `rm pieces` (list, show, remove, with the space
//! measured), the staging sweep, two `rm import`s of one CAR at once, and the unsealed
//! cache's cap while deals are served.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
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

fn random_file(path: &Path, len: usize, seed: u64) {
    let mut x = 0x2545_f491_4f6c_dd1du64 ^ seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    std::fs::write(path, out).unwrap();
}

fn disk(path: &Path) -> u64 {
    rm_node::pieces::disk_usage(path).unwrap()
}

fn init(dir: &Path, name: &str) -> PathBuf {
    let home = dir.join(name);
    let (code, out, err) = std::process::Command::new(RM)
        .args(["init"])
        .env("RM_HOME", &home)
        .output()
        .map(|o| {
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    home
}

#[tokio::test]
async fn pieces_are_listed_shown_and_removed_with_their_space() {
    let dir = tempfile::tempdir().unwrap();
    let home = init(dir.path(), "home");
    let (small, large) = (dir.path().join("small"), dir.path().join("large"));
    random_file(&small, 100_000, 1);
    random_file(&large, 16 << 20, 2);
    let kept = json(&home, &["import", small.to_str().unwrap()]).await;
    let gone = json(&home, &["import", large.to_str().unwrap()]).await;
    let gone_piece = gone["piece_cid"].as_str().unwrap().to_owned();

    let list = json(&home, &["pieces"]).await;
    let pieces = list["pieces"].as_array().unwrap();
    assert_eq!(pieces.len(), 2, "{list}");
    let (code, text, _) = run(&home, &["pieces", "list"]).await;
    assert_eq!(code, 0);
    assert!(text.contains(&gone_piece), "{text}");

    let shown = json(&home, &["pieces", "show", &gone_piece]).await;
    assert_eq!(shown["payload_cids"][0], gone["payload_cid"]);
    assert_eq!(shown["data_size"], gone["car_size"]);
    assert_eq!(shown["piece_size"], gone["piece_size"]);
    assert_eq!(shown["deals"][0]["sector"], gone["sector"]);
    assert_eq!(shown["readers"], 0);

    let sectors = home.join("sectors");
    let before = disk(&sectors);
    let removed = json(&home, &["pieces", "remove", &gone_piece]).await;
    let after = disk(&sectors);
    // 16 MiB of data, Fr32-padded: all of it freed.
    assert!(before - after >= 16 << 20, "{before} -> {after}");
    assert_eq!(
        removed["sector_bytes_freed"].as_u64().unwrap(),
        before - after
    );
    let (b, a) = (
        removed["disk_bytes_before"].as_u64().unwrap(),
        removed["disk_bytes_after"].as_u64().unwrap(),
    );
    assert!(b - a >= 16 << 20, "{removed}");
    assert_eq!(removed["payload_cids"][0], gone["payload_cid"]);

    let list = json(&home, &["pieces"]).await;
    assert_eq!(list["pieces"].as_array().unwrap().len(), 1);
    assert_eq!(list["pieces"][0]["piece_cid"], kept["piece_cid"]);
    // Unknown now: one sentence, exit code 1.
    let (code, _, err) = run(&home, &["pieces", "remove", &gone_piece]).await;
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
    let (code, _, err) = run(&home, &["pieces", "show", "not-a-cid"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("is not a CID"), "{err}");
}

#[tokio::test]
async fn staging_leftovers_are_removed_when_a_command_opens_the_home() {
    let dir = tempfile::tempdir().unwrap();
    let home = init(dir.path(), "home");
    json(&home, &["pieces"]).await;
    let staging = home.join("staging");
    std::fs::write(staging.join("import-1.car"), vec![7u8; 1 << 20]).unwrap();
    std::fs::create_dir_all(staging.join("half")).unwrap();
    std::fs::write(staging.join("half/scratch"), b"x").unwrap();
    json(&home, &["pieces"]).await;
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_importing_one_car_store_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let home = init(dir.path(), "home");
    // A CAR of 48 MiB of data: long enough for the two imports to overlap.
    let input = dir.path().join("input");
    random_file(&input, 48 << 20, 3);
    let car = dir.path().join("input.car");
    {
        let scratch = rm_blockio::MemoryBlockstore::new();
        let root = rm_blockio::unixfs::import_path(
            &scratch,
            rm_blockio::unixfs::Preset::UNIXFS_V1_2025,
            &input,
        )
        .unwrap()
        .root;
        rm_blockio::car::export(
            &scratch,
            root,
            &rm_blockio::Selector::explore_all_recursively(),
            std::fs::File::create(&car).unwrap(),
        )
        .unwrap();
    }
    let car = car.to_str().unwrap();
    let args = ["--json", "import", "--car", car];
    let (a, b) = tokio::join!(run(&home, &args), run(&home, &args));
    let mut stored = 0;
    for (code, out, err) in [&a, &b] {
        match code {
            0 => {
                let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
                if v["new"] == true {
                    stored += 1;
                }
            }
            // The other process had the home: refused cleanly, nothing written.
            // (with --json the error is a JSON line on stdout)
            1 => assert!(
                format!("{out}{err}").contains("in use by another rm command"),
                "{out}{err}"
            ),
            other => panic!("exit code {other}: {out}{err}"),
        }
    }
    assert!(a.0 == 0 || b.0 == 0, "{a:?} {b:?}");
    assert_eq!(stored, 1, "{a:?} {b:?}");
    let list = json(&home, &["pieces"]).await;
    let pieces = list["pieces"].as_array().unwrap();
    assert_eq!(pieces.len(), 1);
    assert_eq!(pieces[0]["deals"].as_array().unwrap().len(), 1);
    // One copy in the sector files: 48 MiB padded (in a 64 MiB piece).
    let used = disk(&home.join("sectors"));
    assert!(used < 50 << 20, "{used}");
}

/// `rm serve` until the test ends; returns the child and the provider's multiaddr.
async fn serve(home: &Path) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let mut child = rm(home, &["--json", "serve", "--listen", &listen])
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
    let addr = v["addrs"][0].as_str().unwrap().to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unsealed_cache_keeps_to_its_cap_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let provider = init(dir.path(), "provider");
    let client = init(dir.path(), "client");
    // Pieces through the cache (as from sealed sectors), with room for one 2 MiB piece.
    let config = provider.join("config.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("direct_reads = true", "direct_reads = false")
        .replace(
            "unsealed_cache_size = \"32GiB\"",
            "unsealed_cache_size = \"3MiB\"",
        );
    std::fs::write(&config, text).unwrap();
    let mut payloads = Vec::new();
    let mut piece_cids = Vec::new();
    for i in 0..2u64 {
        let f = dir.path().join(format!("f{i}"));
        random_file(&f, 2 << 20, 10 + i);
        let v = json(&provider, &["import", f.to_str().unwrap()]).await;
        payloads.push(v["payload_cid"].as_str().unwrap().to_owned());
        piece_cids.push(v["piece_cid"].as_str().unwrap().to_owned());
    }
    let (mut server, addr) = serve(&provider).await;
    for (i, payload) in payloads.iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let v = json(
            &client,
            &["retrieve", &addr, payload, "-o", out.to_str().unwrap()],
        )
        .await;
        assert_eq!(v["status"], "Completed", "{v}");
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(dir.path().join(format!("f{i}"))).unwrap()
        );
    }
    let pid = server.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), server.wait())
        .await
        .unwrap()
        .unwrap();
    // The first piece went to make room for the second; the cache holds one.
    let list = json(&provider, &["pieces"]).await;
    let cached: Vec<&str> = list["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["cached_bytes"].is_u64())
        .map(|p| p["piece_cid"].as_str().unwrap())
        .collect();
    assert_eq!(cached, vec![piece_cids[1].as_str()], "{list}");
    assert!(disk(&provider.join("unsealed-cache")) <= 3 << 20);
}
