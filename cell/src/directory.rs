//! What the cell hears of its tenants' directory status (`global.directory`,
//! group `cell.{id}`), and the sweeper that purges a tenant once its grace
//! period is over, reporting it on `cell.tenants`.

use std::sync::Arc;
use std::time::Duration;

use shared::lifecycle::DIRECTORY_STREAM;
use shared::sync::{Event, consumer};
use tokio_util::sync::CancellationToken;

use crate::State;
use crate::service::{purge, tenants};

const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub fn spawn(st: State, shutdown: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
    let handler: consumer::Handler = {
        let st = st.clone();
        Arc::new(move |events: Vec<Event>| {
            let st = st.clone();
            Box::pin(async move {
                tenants::apply_directory(&st.db, st.cell_id.as_str(), &events).await?;
                // Status and version are tenant attributes flags target.
                st.flags.rebuild(&st.db, st.cell_id.as_str()).await
            })
        })
    };
    let cfg = consumer::Config {
        stream: DIRECTORY_STREAM.into(),
        group: format!("cell.{}", st.cell_id),
        consumer: format!("{}:{}", st.cell_id, uuid::Uuid::now_v7()),
        batch: 100,
        block: Duration::from_secs(1),
        claim_idle: Duration::from_secs(30),
    };
    vec![
        tokio::spawn(consumer::run(
            st.transport.clone(),
            cfg,
            handler,
            None,
            shutdown.clone(),
        )),
        tokio::spawn(sweep(st, shutdown)),
    ]
}

async fn sweep(st: State, shutdown: CancellationToken) {
    loop {
        match purge::purge_due(&st.db, st.cell_id.as_str()).await {
            Ok(ids) if !ids.is_empty() => {
                for id in &ids {
                    tracing::info!(tenant_id = %id, "grace period over: tenant purged");
                }
                st.relay.nudge();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purge sweep failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
