//! The metric catalog table, the same on both tiers: the global tier writes
//! it through mutations, cells through the sync stream. A synced kind of
//! [`crate::synced`].

use sea_orm::{ConnectionTrait, Value};

use super::MetricDef;
use crate::Result;
use crate::synced::{self, Definition, Table};

impl Definition for MetricDef {
    const TABLE: Table = Table::keyed("metrics", "name");
    const STREAM: &'static str = super::STREAM;
    fn key(&self) -> Value {
        self.name.clone().into()
    }
    fn entity(&self) -> String {
        super::entity(&self.name)
    }
}

/// Creates the metric table.
pub const MIGRATION: synced::Migration = synced::Migration {
    name: "m0501_create_metrics",
    tables: &[MetricDef::TABLE],
};

/// A stored definition with its version.
pub type Stored = synced::Stored<MetricDef>;

/// The metric `name` with its version, if it is defined.
pub async fn get<C: ConnectionTrait>(db: &C, name: &str) -> Result<Option<Stored>> {
    Ok(synced::get::<MetricDef, C>(db, name)
        .await?
        .map(synced::Row::stored))
}

/// Every metric, by name.
pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<Stored>> {
    Ok(synced::all::<MetricDef, C>(db)
        .await?
        .into_iter()
        .map(synced::Row::stored)
        .collect())
}

/// Writes `def` at `version`, replacing what is there.
pub async fn put<C: ConnectionTrait>(db: &C, def: &MetricDef, version: i64) -> Result<()> {
    synced::put(db, def, version).await
}
