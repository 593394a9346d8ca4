//! Runs `examples/compose.rs`: rm's behaviour in a swarm of the program's own, next to
//! `libp2p::ping`, answering a query end to end on 127.0.0.1.

#[allow(dead_code)] // the example's `main`
#[path = "../examples/compose.rs"]
mod compose;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_example_answers_a_query_and_pings_run_alongside() {
    let (response, pings) =
        tokio::time::timeout(std::time::Duration::from_secs(60), compose::run())
            .await
            .expect("the example finished in time")
            .expect("the example ran");
    assert_eq!(response.size, 19_000);
    assert_eq!(response.min_price_per_byte.atto().to_string(), "1000");
    assert!(
        pings >= 1,
        "the other behaviour ran on the same connection: {pings} pings"
    );
}
