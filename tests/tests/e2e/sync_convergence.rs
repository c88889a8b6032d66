//! Property: whatever the stream does to a sequence of registry changes
//! (loses, duplicates, reorders them), one anti-entropy repair pass leaves
//! every cell exactly as in-order delivery would have. It runs the real
//! apply path (`configkeys::apply`, monotonic per entity), the real digest
//! and diff, on real cell databases (SQLite, the cell's own migrations).

use std::collections::BTreeMap;

use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sea_orm::DatabaseConnection;
use serde_json::json;
use shared::configkeys::{self, KeyDef, Scope, ValueType, store};
use shared::sync::digest;

#[derive(Debug, Clone)]
enum Change {
    Define { key: usize, default: i64 },
    Deprecate { key: usize },
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        4 => (0..6usize, -50..50i64).prop_map(|(key, default)| Change::Define { key, default }),
        1 => (0..6usize).prop_map(|key| Change::Deprecate { key }),
    ]
}

/// The owner's events in commit order, and its final (def, version) per key.
/// Key → (definition, version).
type Owned = BTreeMap<String, (KeyDef, i64)>;

fn owner(changes: &[Change]) -> (Vec<(KeyDef, i64)>, Owned) {
    let mut state = Owned::new();
    let mut events = Vec::new();
    for c in changes {
        let (key, next) = match c {
            Change::Define { key, default } => {
                let name = format!("prop.k{key}");
                let def = KeyDef {
                    key: name.clone(),
                    value_type: ValueType::Int,
                    default: json!(default),
                    scopes: vec![Scope::Tenant],
                    description: String::new(),
                    min: None,
                    max: None,
                    allowed: None,
                    pattern: None,
                    json_schema: None,
                    deprecated: false,
                };
                (name, Some(def))
            }
            Change::Deprecate { key } => {
                let name = format!("prop.k{key}");
                let def = state.get(&name).map(|(d, _)| KeyDef {
                    deprecated: true,
                    ..d.clone()
                });
                (name, def)
            }
        };
        let Some(def) = next else { continue };
        let version = state.get(&key).map(|(_, v)| v + 1).unwrap_or(1);
        state.insert(key, (def.clone(), version));
        events.push((def, version));
    }
    (events, state)
}

/// What a faulty stream delivers: each event lost, duplicated or kept,
/// then the lot shuffled and cut into batches.
fn deliveries(events: &[(KeyDef, i64)], seed: u64) -> Vec<Vec<(KeyDef, i64)>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for e in events {
        match rng.random_range(0..10) {
            0..=1 => {}
            2..=3 => {
                out.push(e.clone());
                out.push(e.clone());
            }
            _ => out.push(e.clone()),
        }
    }
    out.shuffle(&mut rng);
    let mut batches = Vec::new();
    while !out.is_empty() {
        let n = rng.random_range(1..=out.len().min(5));
        batches.push(out.drain(..n).collect());
    }
    batches
}

async fn cell_db() -> DatabaseConnection {
    let db = shared::db::connect("sqlite::memory:", 1).await.unwrap();
    shared::db::migrate::<cell::migration::Migrator>(&db, 1)
        .await
        .unwrap();
    db
}

/// The repair pass as the global tier runs it: compare digests, diff, and
/// deliver the owner's current version of every entity the cell is behind on.
async fn repair(db: &DatabaseConnection, owned: &Owned) -> usize {
    let mine: digest::Versions = owned
        .iter()
        .map(|(k, (_, v))| (configkeys::entity(k), *v))
        .collect();
    let theirs = digest::applied(db, "config-key").await.unwrap();
    if digest::digest(&mine) == digest::digest(&theirs) {
        return 0;
    }
    let d = digest::diff(&mine, &theirs);
    assert!(d.ahead.is_empty(), "a replica is never ahead of its owner");
    let republished: Vec<(KeyDef, i64)> = d
        .behind
        .iter()
        .map(|e| owned[e.strip_prefix("config-key:").unwrap()].clone())
        .collect();
    configkeys::apply(db, &republished).await.unwrap();
    republished.len()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn one_repair_pass_converges_every_cell(
        changes in prop::collection::vec(change(), 1..40),
        seeds in prop::array::uniform3(any::<u64>()),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (events, owned) = owner(&changes);
            let reference = cell_db().await;
            for e in &events {
                configkeys::apply(&reference, std::slice::from_ref(e)).await.unwrap();
            }
            let want = store::all(&reference).await.unwrap();
            assert_eq!(want.len(), owned.len());
            for seed in seeds {
                let db = cell_db().await;
                for batch in deliveries(&events, seed) {
                    configkeys::apply(&db, &batch).await.unwrap();
                }
                repair(&db, &owned).await;
                assert_eq!(store::all(&db).await.unwrap(), want, "seed {seed}");
                assert_eq!(repair(&db, &owned).await, 0, "a second pass finds nothing");
            }
        });
    }
}
