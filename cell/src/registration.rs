//! Registers this cell with the global tier and keeps heartbeating, so the
//! global tier can place tenants here and notice when the cell goes silent.

use std::time::Duration;

use serde_json::json;
use shared::Code;
use shared::client::GraphqlClient;
use tokio_util::sync::CancellationToken;

use crate::State;
use crate::service::tenants;

pub struct Registration {
    pub client: GraphqlClient,
    pub global_url: String,
    pub endpoint: String,
    pub interval: Duration,
}

const REGISTER: &str =
    "mutation($input: RegisterCellInput!) { registerCell(input: $input) { id status } }";
const HEARTBEAT: &str = "mutation($id: ID!) { cellHeartbeat(id: $id) { id status } }";

impl Registration {
    pub async fn run(self, st: State, shutdown: CancellationToken) {
        let mut registered = false;
        let mut failures = 0u32;
        let mut withheld = 0u32;
        loop {
            // A cell whose database does not answer cannot serve its
            // tenants: it withholds the beat, so the global tier marks it
            // DOWN after the heartbeat timeout and placement avoids it.
            if !database_answers(&st).await {
                withheld += 1;
                if withheld == 1 || withheld.is_multiple_of(10) {
                    tracing::warn!(cell = %st.cell_id, withheld, "database unreachable; heartbeat withheld");
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.interval) => {}
                    _ = shutdown.cancelled() => return,
                }
                continue;
            }
            withheld = 0;
            let result = if registered {
                self.client
                    .call::<serde_json::Value>(
                        "global tier",
                        &self.global_url,
                        HEARTBEAT,
                        json!({ "id": st.cell_id }),
                    )
                    .await
            } else {
                let count = tenants::count(&st.db).await.unwrap_or(0);
                self.client
                    .call::<serde_json::Value>(
                        "global tier",
                        &self.global_url,
                        REGISTER,
                        json!({ "input": {
                            "id": st.cell_id,
                            "region": st.region,
                            "endpoint": self.endpoint,
                            "capacity": st.capacity,
                            "tenantCount": count,
                        }}),
                    )
                    .await
            };
            match result {
                Ok(_) => {
                    if !registered || failures > 0 {
                        tracing::info!(cell = %st.cell_id, "registered with the global tier");
                    }
                    registered = true;
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    if e.code() == Code::NotFound {
                        registered = false;
                    }
                    // Log the first failure and then every tenth, to keep logs readable in an outage.
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!(cell = %st.cell_id, failures, error = %e, "heartbeat to the global tier failed");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Whether the cell's database answers a ping within 2 s (as `/readyz` asks).
async fn database_answers(st: &State) -> bool {
    tokio::time::timeout(Duration::from_secs(2), st.db.ping())
        .await
        .is_ok_and(|r| r.is_ok())
}
