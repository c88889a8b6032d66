//! The config key registry in the cell, a synced kind ([`crate::follow`]):
//! applied from `global.config-keys` as it comes and resynced from the
//! global API's `configKeys`. Nothing in memory depends on it: config
//! writes read the cell's copy of the registry from its table.

use sea_orm::DatabaseTransaction;
use serde::Deserialize;
use shared::configkeys::{self, KeyDef};
use shared::sync::Event;

use crate::State;
use crate::follow::{self, Count, Kind};

/// The registry, as the cell follows it.
pub struct ConfigKeys;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    config_keys: Vec<AnsweredKey>,
}

/// A key as the global API answers it: its definition and version.
#[derive(Deserialize)]
struct AnsweredKey {
    #[serde(flatten)]
    def: KeyDef,
    version: i64,
}

#[async_trait::async_trait]
impl Kind for ConfigKeys {
    const NAME: &'static str = "config registry";
    const STREAMS: &'static [&'static str] = &[configkeys::STREAM];
    /// Aliases give each field `KeyDef`'s own name, so the answer decodes into it.
    const QUERY: &'static str = "{ configKeys { key value_type: type default scopes description min max allowed: enum pattern json_schema: jsonSchema deprecated version } }";
    type Answer = Answer;
    type Batch = Vec<(KeyDef, i64)>;
    type Changed = ();

    fn decode(events: &[Event]) -> shared::Result<Self::Batch> {
        follow::decode(events)
    }

    fn from_answer(answer: Answer) -> Self::Batch {
        answer
            .config_keys
            .into_iter()
            .map(|k| (k.def, k.version))
            .collect()
    }

    async fn apply(
        txn: &DatabaseTransaction,
        batch: &Self::Batch,
        repair: bool,
    ) -> shared::Result<(Count, ())> {
        follow::apply_defs(txn, batch, repair).await
    }

    async fn rebuild(_: &State, _: ()) -> shared::Result<()> {
        Ok(())
    }
}
