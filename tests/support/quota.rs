//! Helpers of the quota tests: the catalog, quota mutations and the hooks.

use std::time::Duration;

use serde_json::{Value, json};
use shared::auth::Role;
use shared::ids::TenantId;

use crate::Stack;

pub const DEFINE: &str = "mutation($i: DefineMetricInput!) { defineMetric(input: $i) { name kind unit failMode version } }";
pub const SET: &str =
    "mutation($i: SetQuotaInput!) { setQuota(input: $i) { metric version source } }";
pub const CLEAR: &str =
    "mutation($i: ClearQuotaInput!) { clearQuota(input: $i) { metric version source } }";
pub const QUOTAS: &str = "query($t: ID!) { quotas(tenantId: $t) { metric kind limit period burst enforcement used remaining resetAt source version } }";

/// Defines a metric at the global tier (panics on errors).
pub async fn define(s: &Stack, name: &str, kind: &str, fail_mode: &str) -> Value {
    let v = s
        .gql(
            &s.admin(),
            DEFINE,
            json!({ "i": { "name": name, "kind": kind, "unit": "unit", "failMode": fail_mode } }),
        )
        .await;
    assert!(v.get("errors").is_none(), "defineMetric failed: {v}");
    v["data"]["defineMetric"].clone()
}

/// Waits until every cell of the stack holds `names` in its catalog.
pub async fn wait_synced(s: &Stack, names: &[&str]) {
    for c in &s.cells {
        let mut held = Vec::new();
        for _ in 0..200 {
            held = shared::quota::store::all(&c.state.db)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.def.name)
                .collect::<Vec<_>>();
            if names.iter().all(|n| held.iter().any(|h| h == n)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            names.iter().all(|n| held.iter().any(|h| h == n)),
            "cell {} holds {held:?}, not all of {names:?}",
            c.state.cell_id
        );
    }
}

/// A data-plane token bound to `cell`, optionally scoped to tenants.
pub fn data_plane(s: &Stack, cell: &str, tenants: &[TenantId]) -> String {
    s.token("edge", &[Role::DataPlane], tenants, Some(cell))
}

/// POSTs JSON to a cell hook; returns status and body.
pub async fn hook(
    s: &Stack,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = s.http.post(format!("{base}{path}")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("hook answered");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A consume request body.
pub fn consume(tenant: &str, metric: &str, amount: i64, key: &str) -> Value {
    json!({ "tenantId": tenant, "metric": metric, "amount": amount, "idempotencyKey": key })
}
