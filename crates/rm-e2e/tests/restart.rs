//! Acceptance test 11: a client or a provider killed with SIGKILL mid-transfer and started
//! again on the same home finishes the deal, paying exactly 19,958,000 for lorem.txt.
//!
//! The killed side runs as a child process (`rm-e2e-node`); the provider sends one block
//! per response at 20,000 bytes/s so the kill lands mid-transfer.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use rm_blockio::unixfs::Preset;
use rm_e2e::{Node, lorem_path};
use rm_types::{Ask, Params, TokenAmount};

const NODE: &str = env!("CARGO_BIN_EXE_rm-e2e-node");

fn atto(v: u64) -> TokenAmount {
    TokenAmount::from_atto(v)
}

struct Proc {
    child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(NODE)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rm-e2e-node");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Proc { child, lines }
    }

    /// The next line starting with `prefix` (bounded: the child ends or prints it).
    fn line(&mut self, prefix: &str) -> Option<String> {
        for line in self.lines.by_ref() {
            let line = line.ok()?;
            if line.starts_with(prefix) {
                return Some(line);
            }
        }
        None
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_killed_mid_transfer_resumes_and_pays_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let pnode = Node::open(&dir.path().join("provider")).await.unwrap();
    let root = pnode.import(&lorem_path(), Preset::GO_FIL_MARKETS).unwrap();
    let mut config = rm_provider::Config::default();
    config.deal.max_blocks_per_response = 1;
    config.deal.max_bytes_per_second = Some(20_000);
    let provider = pnode.provider(config).await.unwrap();
    provider
        .set_ask(Ask {
            price_per_byte: atto(1000),
            unseal_price: TokenAmount::zero(),
            payment_interval: 10_000,
            payment_interval_increase: 1_000,
        })
        .unwrap();
    provider.start();
    let addr = pnode.addrs().await.unwrap()[0].to_string();
    let home = dir.path().join("client");
    let out = dir.path().join("out.txt");
    let args = [
        "client",
        home.to_str().unwrap(),
        &pnode.peer_id().to_string(),
        &addr,
        &root.to_string(),
        &pnode.address.to_string(),
        "1000",
        out.to_str().unwrap(),
    ];
    let killed_at = tokio::task::spawn_blocking({
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut first = Proc::spawn(&args);
            loop {
                let line = first.line("PROGRESS").expect("client reports progress");
                let bytes: u64 = line[9..].parse().unwrap();
                if bytes >= 5_000 {
                    first.kill();
                    return bytes;
                }
            }
        }
    })
    .await
    .unwrap();
    assert!(
        killed_at < 19_958,
        "killed mid-transfer, at {killed_at} bytes"
    );
    let done = tokio::task::spawn_blocking({
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut second = Proc::spawn(&args);
            second.line("DONE").expect("restarted client finishes")
        }
    })
    .await
    .unwrap();
    assert_eq!(done, "DONE Completed 19958000 10174000,19958000");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(lorem_path()).unwrap()
    );
    let (_, deal) = provider.list_deals().unwrap().pop().unwrap();
    assert_eq!(deal.status(), rm_provider::ProviderStatus::Completed);
    assert_eq!(deal.funds_received, atto(19_958_000));
    assert!(deal.resumes >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_killed_mid_transfer_resumes_and_is_paid_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("provider");
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let fixture = lorem_path();
    let args: Vec<String> = [
        "provider",
        home.to_str().unwrap(),
        &listen,
        fixture.to_str().unwrap(),
        "1000",
        "20000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let spawn = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut p = Proc::spawn(&args);
            let ready = p.line("READY").expect("provider starts");
            (p, ready)
        })
    };
    let (first, ready) = spawn(args.clone()).await.unwrap();
    let fields: Vec<&str> = ready.split(' ').collect();
    let (peer, addr, payee, root) = (fields[1], fields[2], fields[3], fields[4]);

    let cnode = Node::open(&dir.path().join("client")).await.unwrap();
    let mut config = rm_client::Config::default();
    config.deal.max_reconnects = 50;
    config.deal.max_backoff = Duration::from_millis(300);
    let client = cnode.client(config).await.unwrap();
    let mut events = client.subscribe_to_events();
    let id = client
        .retrieve(rm_client::Retrieval {
            payload_cid: root.parse().unwrap(),
            params: Params::new(atto(1000), 10_000, 1_000),
            total_funds: atto(19_958_000),
            provider: peer.parse().unwrap(),
            provider_addrs: vec![addr.parse().unwrap()],
            miner_wallet: payee.parse().unwrap(),
            caps: rm_client::Caps::default(),
        })
        .await
        .unwrap();
    // Kill the provider once 5,000 verified bytes arrived.
    let mut first = Some(first);
    while first.is_some() {
        let note = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("progress")
            .unwrap();
        if let rm_fsm::Notification::Applied { snapshot, .. } = note
            && snapshot.state.bytes_received >= 5_000
        {
            assert!(snapshot.state.bytes_received < 19_958);
            first.take().unwrap().kill();
        }
    }
    let (second, _) = spawn(args).await.unwrap();
    let deal = tokio::time::timeout(Duration::from_secs(60), client.wait(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        deal.status(),
        rm_client::ClientStatus::Completed,
        "{}",
        deal.message()
    );
    assert_eq!(deal.vouchers, vec![atto(10_174_000), atto(19_958_000)]);
    assert_eq!(deal.funds_spent, atto(19_958_000));
    let root = root.parse().unwrap();
    assert_eq!(
        cnode.export(&root).unwrap(),
        std::fs::read(lorem_path()).unwrap()
    );

    // The provider's own record, read from its home once the process is gone.
    second.kill();
    let pnode = Node::open(&home).await.unwrap();
    let provider = pnode
        .provider(rm_provider::Config::default())
        .await
        .unwrap();
    let (_, pdeal) = provider.list_deals().unwrap().pop().unwrap();
    assert_eq!(
        pdeal.status(),
        rm_provider::ProviderStatus::Completed,
        "{}",
        pdeal.message()
    );
    assert_eq!(pdeal.funds_received, atto(19_958_000));
    let lane = pdeal.lane.expect("paid on a lane");
    let latest = pnode
        .ledger
        .latest_voucher(&lane.channel, lane.lane)
        .unwrap()
        .unwrap();
    assert_eq!(latest.amount, atto(19_958_000));
}
