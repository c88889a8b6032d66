//! The metric catalog in the cell, a synced kind ([`crate::follow`]):
//! applied from `global.metrics` as it comes, resynced from the global
//! API's `metrics`, and reloaded into the quota engine after each change.

use sea_orm::DatabaseTransaction;
use serde::Deserialize;
use shared::quota::api::MetricView;
use shared::quota::{self, MetricDef};
use shared::sync::Event;

use crate::State;
use crate::follow::{self, Count, Kind};

/// The catalog, as the cell follows it.
pub struct Catalog;

#[derive(Deserialize)]
pub struct Answer {
    metrics: Vec<MetricView>,
}

#[async_trait::async_trait]
impl Kind for Catalog {
    const NAME: &'static str = "metric catalog";
    const STREAMS: &'static [&'static str] = &[quota::STREAM];
    const QUERY: &'static str = "{ metrics { name kind unit description failMode version } }";
    type Answer = Answer;
    type Batch = Vec<(MetricDef, i64)>;
    type Changed = ();

    fn decode(events: &[Event]) -> shared::Result<Self::Batch> {
        follow::decode(events)
    }

    fn from_answer(answer: Answer) -> Self::Batch {
        answer
            .metrics
            .into_iter()
            .map(|m| {
                (
                    MetricDef {
                        name: m.name,
                        kind: m.kind,
                        unit: m.unit,
                        description: m.description,
                        fail_mode: m.fail_mode,
                    },
                    m.version,
                )
            })
            .collect()
    }

    async fn apply(
        txn: &DatabaseTransaction,
        batch: &Self::Batch,
        repair: bool,
    ) -> shared::Result<(Count, ())> {
        follow::apply_defs(txn, batch, repair).await
    }

    async fn rebuild(st: &State, _: ()) -> shared::Result<()> {
        st.quota.reload_catalog().await
    }
}
