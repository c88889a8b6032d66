//! Batches reads of what cells own (tenant records, projects, plans) from
//! their cells: one call per cell per kind per request, whatever the number
//! of tenants asked.

use std::collections::HashMap;
use std::future::Future;

use async_graphql::dataloader::Loader;
use futures_util::future::join_all;
use shared::Code;
use shared::ids::TenantId;
use shared::model::CellTenant;
use shared::plans::TenantPlan;
use shared::projects::Project;

use crate::State;
use crate::entity::cell;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordKey {
    pub cell: String,
    pub id: TenantId,
}

/// Cloneable so the loader can hand it to every waiting field.
#[derive(Debug, Clone)]
pub struct LoadError(pub Code, pub String);

impl From<LoadError> for shared::Error {
    fn from(e: LoadError) -> Self {
        shared::Error::from_remote(e.0, e.1, None)
    }
}

/// Each key gets its own outcome: one unreachable cell must not hide the
/// tenants of the others. A tenant the cell did not answer for is absent.
pub type Fetched<V> = Result<V, LoadError>;

/// Groups `keys` by cell, calls `fetch` once per cell (all cells at once)
/// and spreads each answer, or each cell's error, over its keys.
async fn per_cell<V, F, Fut>(
    st: &State,
    keys: &[RecordKey],
    fetch: F,
) -> HashMap<RecordKey, Fetched<V>>
where
    V: Clone,
    F: Fn(cell::Model, Vec<TenantId>) -> Fut,
    Fut: Future<Output = shared::Result<Vec<(TenantId, V)>>>,
{
    let mut by_cell: HashMap<&str, Vec<TenantId>> = HashMap::new();
    for k in keys {
        by_cell.entry(k.cell.as_str()).or_default().push(k.id);
    }
    let calls = by_cell.into_iter().map(|(cell_id, ids)| {
        let call = st.cells.get(cell_id).map(|c| fetch(c, ids.clone()));
        async move {
            let result = match call {
                None => Err(LoadError(
                    Code::Unavailable,
                    format!("cell {cell_id} is not registered"),
                )),
                Some(call) => call.await.map_err(|e| LoadError(e.code(), e.to_string())),
            };
            (cell_id, ids, result)
        }
    });
    let mut out = HashMap::new();
    for (cell, ids, result) in join_all(calls).await {
        let key = |id| RecordKey {
            cell: cell.to_owned(),
            id,
        };
        match result {
            Ok(values) => {
                for (id, v) in values {
                    out.insert(key(id), Ok(v));
                }
            }
            Err(e) => {
                for id in ids {
                    out.insert(key(id), Err(e.clone()));
                }
            }
        }
    }
    out
}

/// Tenant records (name, plan, updatedAt).
pub struct CellRecords(pub State);

impl Loader<RecordKey> for CellRecords {
    type Value = Fetched<CellTenant>;
    type Error = std::convert::Infallible;

    async fn load(
        &self,
        keys: &[RecordKey],
    ) -> Result<HashMap<RecordKey, Self::Value>, Self::Error> {
        Ok(per_cell(&self.0, keys, |cell, ids| async move {
            let records = self.0.cell_client.tenants(&cell, &ids).await?;
            Ok(records.into_iter().map(|r| (r.id, r)).collect())
        })
        .await)
    }
}

/// Projects and their environments.
pub struct CellProjects(pub State);

impl Loader<RecordKey> for CellProjects {
    type Value = Fetched<Vec<Project>>;
    type Error = std::convert::Infallible;

    async fn load(
        &self,
        keys: &[RecordKey],
    ) -> Result<HashMap<RecordKey, Self::Value>, Self::Error> {
        Ok(per_cell(&self.0, keys, |cell, ids| async move {
            self.0.cell_client.projects_of(&cell, &ids).await
        })
        .await)
    }
}

/// Plans with their limits and entitlements.
pub struct CellPlans(pub State);

impl Loader<RecordKey> for CellPlans {
    type Value = Fetched<TenantPlan>;
    type Error = std::convert::Infallible;

    async fn load(
        &self,
        keys: &[RecordKey],
    ) -> Result<HashMap<RecordKey, Self::Value>, Self::Error> {
        Ok(per_cell(&self.0, keys, |cell, ids| async move {
            self.0.cell_client.plans_of(&cell, &ids).await
        })
        .await)
    }
}
