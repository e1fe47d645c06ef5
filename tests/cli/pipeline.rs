//! The pipeline through the library, in-process: a dropped run stops and closes its `runs` row;
//! several sinks are written alike; a key recorded in any store counts as done on resume.

use std::time::Duration;

use fanout::RunConfig;
use fanout::sink::StoreConfig;
use fanout::stats::Stats;

use crate::harness::{Dir, TestServer, scalar, text, wait_until};

fn list(server: &TestServer, n: usize) -> String {
    (0..n)
        .map(|i| server.url(&format!("/item/{i}")) + "\n")
        .collect()
}

#[test]
fn dropping_a_run_stops_it_and_closes_its_runs_row() {
    let server = TestServer::start(Duration::from_millis(50));
    let dir = Dir::new();
    let urls = dir.write("urls.txt", &list(&server, 5000));
    let db = dir.path("run.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = RunConfig::builder()
            .input(&urls)
            .store(StoreConfig::Sqlite(db.clone()))
            .concurrency(16)
            .build()
            .unwrap();
        let stats = Stats::new();
        let run = fanout::run(config, stats.clone(), std::future::pending());
        let some_recorded = async {
            while stats.progress().recorded < 100 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            r = run => panic!("the run ended before it was dropped: {r:?}"),
            _ = some_recorded => {}
        }
        // `run` is dropped here, mid-run.
    });
    // Requests already sent may still arrive; then nothing more is sent.
    std::thread::sleep(Duration::from_millis(300));
    let after_drop = server.stats().requests();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        server.stats().requests(),
        after_drop,
        "no request is sent after the run is dropped"
    );
    assert!(
        after_drop < 5000,
        "the run was stopped ({after_drop} requests)"
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            text(&db, "SELECT status FROM runs") == "interrupted"
        }),
        "the runs row is closed as interrupted, not left running: {}",
        text(&db, "SELECT status FROM runs")
    );
    let recorded = scalar(&db, "SELECT count(*) FROM outcomes");
    assert!(recorded >= 100, "what was committed stays ({recorded})");
    drop(rt);
}

#[test]
fn two_stores_get_the_same_outcomes_and_either_counts_on_resume() {
    let server = TestServer::start(Duration::ZERO);
    let dir = Dir::new();
    let urls = dir.write("urls.txt", &list(&server, 300));
    let (a, b) = (dir.path("a.db"), dir.path("b.db"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let run = |stores: &[&std::path::Path]| {
        let mut builder = RunConfig::builder().input(&urls).concurrency(8);
        for s in stores {
            builder = builder.store(StoreConfig::Sqlite(s.to_path_buf()));
        }
        let config = builder.build().unwrap();
        rt.block_on(fanout::run(config, Stats::new(), std::future::pending()))
            .unwrap()
    };
    let first = run(&[&a, &b]);
    assert_eq!(first.total, 300);
    for db in [&a, &b] {
        assert_eq!(
            scalar(db, "SELECT count(*) FROM outcomes WHERE status = 200"),
            300
        );
        assert_eq!(scalar(db, "SELECT count(DISTINCT run_id) FROM outcomes"), 1);
    }
    assert_eq!(
        text(
            &a,
            "SELECT group_concat(key) FROM (SELECT key FROM outcomes ORDER BY key)"
        ),
        text(
            &b,
            "SELECT group_concat(key) FROM (SELECT key FROM outcomes ORDER BY key)"
        )
    );
    // A third store beside one that holds everything: nothing is fetched again.
    let seen = server.stats().requests();
    let c = dir.path("c.db");
    let again = run(&[&c, &a]);
    assert_eq!(again.total, 0);
    assert_eq!(again.skipped, 300);
    assert_eq!(server.stats().requests(), seen, "no request was sent");
    // Run ids are chosen above every store's: the second run is 2 in both a and c.
    assert_eq!(scalar(&a, "SELECT max(id) FROM runs"), 2);
    assert_eq!(scalar(&c, "SELECT max(id) FROM runs"), 2);
}
