//! Cost of one payment: sign, verify (public-key recovery) and the ledger updates.
//!
//! `voucher/payment` is the whole per-voucher cost in one process: the client makes and
//! signs the next cumulative voucher (ledger write), the provider recovers the signer,
//! checks the rules and stores it (ledger write). Goal: well under 1 ms, so that a voucher
//! per MiB costs < 1 % at 400 MiB/s.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rm_paych::{Ledger, Wallet, ledger, voucher, wallet};
use rm_types::{SignedVoucher, TokenAmount};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = rm_store::Db::open(dir.path(), &[ledger::DEFAULT_KEYSPACE], &Default::default())
        .expect("open db");
    let ledger = Ledger::open(db.keyspace(ledger::DEFAULT_KEYSPACE).expect("keyspace"));
    let wallet = Wallet::in_memory();
    let client = wallet.new_key().expect("key");
    let provider = wallet.new_key().expect("key");
    let funds = TokenAmount::from_atto(u128::MAX);
    let (channel, _) = ledger
        .create_channel(&client, &provider, &funds)
        .expect("channel");
    let lane = ledger.allocate_lane(&channel).expect("lane");

    let mut group = c.benchmark_group("voucher");
    let unsigned = SignedVoucher::new(
        channel.clone(),
        lane,
        1,
        TokenAmount::from_atto(10_174_000u64),
    );
    group.bench_function("sign", |b| {
        b.iter(|| {
            let mut v = unsigned.clone();
            voucher::sign(&mut v, &wallet, &client).expect("sign");
            black_box(v)
        })
    });

    let mut signed = unsigned.clone();
    voucher::sign(&mut signed, &wallet, &client).expect("sign");
    group.bench_function("verify", |b| {
        b.iter(|| voucher::verify(black_box(&signed), &client).expect("verify"))
    });

    let bytes = signed.signing_bytes().expect("bytes");
    group.bench_function("blake2b_digest", |b| {
        b.iter(|| wallet::digest(black_box(&bytes)))
    });

    let mut total = 0u64;
    let step = 1_048_576u64; // one MiB at 1 attoFIL/byte
    group.bench_function("payment", |b| {
        b.iter(|| {
            total += step;
            let amount = TokenAmount::from_atto(total);
            let v = ledger
                .create_voucher(&wallet, &channel, lane, &amount)
                .expect("create");
            let delta = ledger.save_voucher(&channel, &v, &provider).expect("save");
            assert_eq!(delta, TokenAmount::from_atto(step));
            black_box(delta)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
