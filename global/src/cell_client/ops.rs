//! Questions about many tenants or the cell's replicas: impact matches
//! (`service::impact`) and anti-entropy digests (`service::antientropy`).

use serde::Deserialize;
use serde_json::json;
use shared::Result;

use super::CellClient;
use crate::entity::cell;

/// What a cell applied of one kind of replicated entity (`syncVersions`).
#[derive(Debug, Clone, Deserialize)]
pub struct SyncVersions {
    pub digest: String,
    /// Empty unless asked for in full.
    #[serde(default)]
    pub entities: Vec<SyncEntity>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SyncEntity {
    pub entity: String,
    pub version: i64,
}

#[derive(Deserialize)]
struct Matches {
    matches: Vec<String>,
}

impl CellClient {
    /// Asks the cell which of its tenants each question matches.
    pub async fn impact_matches(
        &self,
        cell: &cell::Model,
        questions: &[shared::impact::Question],
    ) -> Result<Vec<Vec<uuid::Uuid>>> {
        let out: Matches = self
            .field(
                cell,
                "impactMatches",
                "query($q: [ImpactQuestion!]!) { impactMatches(questions: $q) { matches } }",
                json!({ "q": questions }),
            )
            .await?;
        out.matches
            .iter()
            .map(|m| {
                shared::impact::unpack(m).ok_or_else(|| {
                    shared::Error::internal(anyhow::anyhow!(
                        "cell {} answered impact matches that are not packed ids",
                        cell.id
                    ))
                })
            })
            .collect()
    }

    /// The digest of the (entity, version) pairs of `kind` the cell applied,
    /// and with `full` the pairs themselves.
    pub async fn sync_versions(
        &self,
        cell: &cell::Model,
        kind: &str,
        full: bool,
    ) -> Result<SyncVersions> {
        let query = if full {
            "query($k: String!) { syncVersions(kind: $k) { digest entities { entity version } } }"
        } else {
            "query($k: String!) { syncVersions(kind: $k) { digest } }"
        };
        self.field(cell, "syncVersions", query, json!({ "k": kind }))
            .await
    }
}
