//! Break-glass revocations in the cell: heard on `global.break-glass` (a
//! consumer group of this process's own, so every replica hears each one)
//! and loaded from the global tier at start (before the cell serves; until
//! a load succeeds, every break-glass token is refused) and every
//! `resync_interval_secs`, into the in-memory list every request with a
//! `bg` claim is checked against.

use std::time::Duration;

use serde::Deserialize;
use shared::breakglass::{Revocations, Revoked};
use shared::client::GraphqlClient;
use tokio_util::sync::CancellationToken;

use crate::State;

/// How long a starting cell waits for the global tier's list before it
/// serves anyway (break-glass tokens stay refused until the list loads).
const FIRST_LOAD_WAIT: Duration = Duration::from_secs(3);

/// The first load, before the cell serves: a token revoked while the cell
/// was down is refused from its first request.
pub async fn load_at_start(list: &Revocations, global: Option<&(GraphqlClient, String)>) {
    let Some((client, url)) = global else {
        list.mark_loaded(); // no global tier: nothing to load
        return;
    };
    match tokio::time::timeout(FIRST_LOAD_WAIT, resync(list, client, url)).await {
        Ok(Ok(n)) => tracing::info!(revoked = n, "break-glass revocations loaded"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "break-glass revocations not loaded at start; break-glass tokens are refused until they are")
        }
        Err(_) => tracing::warn!(
            "break-glass revocations not loaded at start (timeout); break-glass tokens are refused until they are"
        ),
    }
}

pub fn spawn(
    st: &State,
    global: Option<(GraphqlClient, String)>,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![shared::breakglass::spawn_consumer(
        st.transport.clone(),
        format!("cell.{}.{}", st.cell_id, uuid::Uuid::now_v7()),
        st.revocations.clone(),
        shutdown.clone(),
    )];
    if let Some((client, url)) = global {
        tasks.push(tokio::spawn(resync_loop(
            st.revocations.clone(),
            client,
            url,
            st.resync_every,
            shutdown,
        )));
    }
    tasks
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Snapshot {
    break_glass_revocations: Vec<Revoked>,
}

/// Loads the revocations whose tokens may still be alive; returns how many.
pub async fn resync(
    list: &Revocations,
    client: &GraphqlClient,
    global_url: &str,
) -> shared::Result<usize> {
    let snap: Snapshot = client
        .call(
            "global tier",
            global_url,
            "{ breakGlassRevocations { id until } }",
            serde_json::json!({}),
        )
        .await?;
    for r in &snap.break_glass_revocations {
        list.revoke(r);
    }
    list.mark_loaded();
    Ok(snap.break_glass_revocations.len())
}

async fn resync_loop(
    list: Revocations,
    client: GraphqlClient,
    url: String,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut synced = false;
    loop {
        match resync(&list, &client, &url).await {
            Ok(_) => synced = true,
            Err(e) => {
                tracing::debug!(error = %e, "revocation resync skipped; the global tier is unreachable")
            }
        }
        // Until the first load succeeds, retry soon.
        let wait = if synced {
            every
        } else {
            Duration::from_millis(500)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
