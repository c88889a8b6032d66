//! Every process reads `global.break-glass` in a consumer group of its own;
//! the global tier drops the groups of processes that stopped (idle past
//! `break_glass_group_idle`) and leaves the live ones alone. Real Redis.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::{Backend, Options, Stack, backing};
use shared::breakglass::STREAM;
use shared::sync::{Transport, redis::Redis};

async fn names(t: &Redis) -> BTreeSet<String> {
    t.groups(STREAM)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect()
}

fn of(names: &BTreeSet<String>, prefix: &str) -> usize {
    names.iter().filter(|n| n.starts_with(prefix)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_of_stopped_processes_are_dropped_and_live_ones_kept() {
    let idle = Duration::from_secs(3);
    let mut o = Options::new(Backend::Sqlite);
    o.ops.break_glass_group_idle = idle;
    let mut s = Stack::start_with(o).await;
    let redis = Redis::new(&backing::redis_url(), &s.redis_prefix, 10_000).unwrap();

    // The global replica and both cells each read in a group of their own.
    let mut groups = BTreeSet::new();
    for _ in 0..100 {
        groups = names(&redis).await;
        if of(&groups, "global.") == 1
            && of(&groups, "cell.us-east-1-a.") == 1
            && of(&groups, "cell.eu-west-1-a.") == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(groups.len(), 3, "{groups:?}");

    // Leftovers of processes gone long ago: one that read, one that never did.
    redis.ensure_group(STREAM, "cell.gone.1").await.unwrap();
    redis
        .read(
            STREAM,
            "cell.gone.1",
            "cell.gone.1",
            10,
            Duration::from_millis(10),
        )
        .await
        .unwrap();
    redis.ensure_group(STREAM, "cell.gone.2").await.unwrap();
    // And a cell stops now.
    let at = s
        .cells
        .iter()
        .position(|c| c.state.cell_id.as_str() == "eu-west-1-a")
        .unwrap();
    s.cells.remove(at).stop().await;

    let started = Instant::now();
    loop {
        let now = names(&redis).await;
        if of(&now, "cell.gone.") == 0 && of(&now, "cell.eu-west-1-a.") == 0 {
            assert_eq!(of(&now, "global."), 1, "{now:?}");
            assert_eq!(of(&now, "cell.us-east-1-a."), 1, "{now:?}");
            break;
        }
        assert!(
            started.elapsed() < idle * 6,
            "dead groups still there after {:?}: {now:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The live processes' groups outlast several idle periods.
    tokio::time::sleep(idle * 2).await;
    let live = names(&redis).await;
    assert_eq!(of(&live, "global."), 1, "{live:?}");
    assert_eq!(of(&live, "cell.us-east-1-a."), 1, "{live:?}");
    assert_eq!(live.len(), 2, "{live:?}");
    s.stop().await;
}
