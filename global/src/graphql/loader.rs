//! Batches reads of tenant records from their cells: one call per cell per
//! request, whatever the number of tenants asked.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use futures_util::future::join_all;
use shared::Code;
use shared::ids::TenantId;
use shared::model::CellTenant;

use crate::State;

pub struct CellRecords(pub State);

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
/// tenants of the others.
pub type Fetched = Result<CellTenant, LoadError>;

impl Loader<RecordKey> for CellRecords {
    type Value = Fetched;
    type Error = std::convert::Infallible;

    async fn load(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, Fetched>, Self::Error> {
        let mut by_cell: HashMap<&str, Vec<TenantId>> = HashMap::new();
        for k in keys {
            by_cell.entry(k.cell.as_str()).or_default().push(k.id);
        }
        let calls = by_cell.into_iter().map(|(cell_id, ids)| async move {
            let result = match self.0.cells.get(cell_id) {
                None => Err(LoadError(
                    Code::Unavailable,
                    format!("cell {cell_id} is not registered"),
                )),
                Some(cell) => self
                    .0
                    .cell_client
                    .tenants(&cell, &ids)
                    .await
                    .map_err(|e| LoadError(e.code(), e.to_string())),
            };
            (cell_id, ids, result)
        });
        let mut out = HashMap::new();
        for (cell, ids, result) in join_all(calls).await {
            match result {
                Ok(records) => {
                    for rec in records {
                        out.insert(
                            RecordKey {
                                cell: cell.to_owned(),
                                id: rec.id,
                            },
                            Ok(rec),
                        );
                    }
                }
                Err(e) => {
                    for id in ids {
                        out.insert(
                            RecordKey {
                                cell: cell.to_owned(),
                                id,
                            },
                            Err(e.clone()),
                        );
                    }
                }
            }
        }
        Ok(out)
    }
}
