//! Calls from the global tier to a cell's GraphQL API: one typed method per
//! cell operation, all through one private call helper (service token,
//! request id and trace context come from `shared::client::GraphqlClient`).
//! The operations are grouped by what they serve:
//!
//! - `provisioning`: a tenant's life in its cell (create, allocate, purge)
//!   and the cell's tenant records the directory is rebuilt from;
//! - `batch`: reads of many tenants of one cell at once (the DataLoaders');
//! - `tenant`: one tenant's configuration, secrets, quotas, plan and
//!   projects, read and written on behalf of the caller (routed there by
//!   `service::tenant_cell`);
//! - `ops`: impact questions and anti-entropy digests.
//!
//! No other code of the global tier writes a query for a cell.

mod batch;
mod ops;
mod provisioning;
mod tenant;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use shared::Result;
use shared::client::GraphqlClient;
use shared::ids::TenantId;

use crate::entity::cell;

pub use ops::SyncVersions;
pub use provisioning::Record;

#[derive(Clone)]
pub struct CellClient {
    gql: GraphqlClient,
}

impl CellClient {
    pub fn new(gql: GraphqlClient) -> Self {
        Self { gql }
    }

    /// Runs `query` on `cell` and decodes its whole `data`.
    async fn call<T: DeserializeOwned>(
        &self,
        cell: &cell::Model,
        query: &str,
        vars: Value,
    ) -> Result<T> {
        self.gql
            .call(&format!("cell {}", cell.id), &cell.endpoint, query, vars)
            .await
    }

    /// Runs `query` on `cell` and returns the answer of its one root field
    /// `field`.
    async fn field<T: DeserializeOwned>(
        &self,
        cell: &cell::Model,
        field: &str,
        query: &str,
        vars: Value,
    ) -> Result<T> {
        let mut out: HashMap<String, Value> = self.call(cell, query, vars).await?;
        let answer = out.remove(field).ok_or_else(|| {
            shared::Error::internal(anyhow::anyhow!("cell answered without {field}"))
        })?;
        serde_json::from_value(answer).map_err(|e| {
            shared::Error::internal(anyhow::anyhow!(
                "cell {} answered an unexpected shape: {e}",
                cell.id
            ))
        })
    }

    /// Runs a write `mutation` whose root field `op` takes `$i` (the input)
    /// and `$who` (the subject the cell records as the actor), and returns
    /// the answer of `op`.
    async fn on_behalf_of<T: DeserializeOwned>(
        &self,
        cell: &cell::Model,
        op: &str,
        mutation: &str,
        input: &impl Serialize,
        who: &str,
    ) -> Result<T> {
        self.field(cell, op, mutation, json!({ "i": input, "who": who }))
            .await
    }
}

/// A tenant id a cell answered, or INTERNAL when it is not one.
fn parse_id(cell: &cell::Model, id: &str) -> Result<TenantId> {
    id.parse().map_err(|_| {
        shared::Error::internal(anyhow::anyhow!(
            "cell {} answered a tenant id that is not one: {id}",
            cell.id
        ))
    })
}
