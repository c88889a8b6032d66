//! The global tier's side of the cells' audit chains: entries shipped on
//! `cell.audit` are stored once each, by (cell, seq), beside the global
//! tier's own chain (`source` = the cell id).

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use shared::audit::{Entry, chain};
use shared::sync::{Event, Transport, consumer};
use shared::{Error, Result};
use tokio_util::sync::CancellationToken;

/// Stores shipped entries; returns how many were new.
pub async fn apply(db: &DatabaseConnection, events: &[Event]) -> Result<u64> {
    let mut by_cell: std::collections::BTreeMap<&str, Vec<Entry>> = Default::default();
    for e in events {
        let entry: Entry = serde_json::from_value(e.payload.clone()).map_err(Error::internal)?;
        by_cell.entry(e.origin.as_str()).or_default().push(entry);
    }
    let mut n = 0;
    for (cell, entries) in by_cell {
        n += chain::store_shipped(db, cell, entries).await?;
    }
    Ok(n)
}

/// Consumes `cell.audit` until `shutdown`.
pub fn spawn(
    db: DatabaseConnection,
    transport: Arc<dyn Transport>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let handler: consumer::Handler = Arc::new(move |events: Vec<Event>| {
        let db = db.clone();
        Box::pin(async move { apply(&db, &events).await.map(|_| ()) })
    });
    let cfg = consumer::Config {
        stream: chain::SHIP_STREAM.into(),
        group: "global".into(),
        consumer: format!("global:{}", uuid::Uuid::now_v7()),
        batch: 200,
        block: Duration::from_secs(1),
        claim_idle: Duration::from_secs(30),
    };
    tokio::spawn(consumer::run(transport, cfg, handler, None, shutdown))
}
