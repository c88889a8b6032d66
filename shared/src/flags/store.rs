//! The flag table, the same on both tiers (the global tier writes it through
//! mutations, cells through the stream), and the cells' table of rollout
//! plans: two synced kinds of [`crate::synced`]. A cell compiles its
//! evaluation snapshot from these.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Value};

use super::{FlagDef, RolloutPlan, StoredFlag};
use crate::synced::{self, Definition, KeyType, Table};
use crate::{Error, Result};

impl Definition for FlagDef {
    const TABLE: Table = Table::keyed("flags", "key");
    const STREAM: &'static str = super::STREAM;
    fn key(&self) -> Value {
        self.key.clone().into()
    }
    fn entity(&self) -> String {
        super::flag_entity(&self.key)
    }
}

impl Definition for RolloutPlan {
    const TABLE: Table = Table {
        name: "rollout_plans",
        key: "id",
        key_type: KeyType::Uuid,
        body: "plan",
        updated_at: false,
    };
    const STREAM: &'static str = super::ROLLOUT_STREAM;
    fn key(&self) -> Value {
        self.id.into()
    }
    fn entity(&self) -> String {
        super::rollout_entity(self.id)
    }
}

/// Creates the flag and rollout plan tables.
pub const MIGRATION: synced::Migration = synced::Migration {
    name: "m0601_create_flag_tables",
    tables: &[FlagDef::TABLE, RolloutPlan::TABLE],
};

/// A stored flag with when it last changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The flag with its version.
    pub flag: StoredFlag,
    /// When the flag was last written.
    pub updated_at: DateTime<Utc>,
}

fn row(r: synced::Row<FlagDef>) -> Result<Row> {
    Ok(Row {
        flag: StoredFlag {
            def: r.def,
            version: r.version,
        },
        updated_at: r
            .updated_at
            .ok_or_else(|| Error::internal(anyhow::anyhow!("a flag row without updated_at")))?,
    })
}

/// The flag `key`, if it exists.
pub async fn get<C: ConnectionTrait>(db: &C, key: &str) -> Result<Option<Row>> {
    synced::get::<FlagDef, C>(db, key)
        .await?
        .map(row)
        .transpose()
}

/// The flag `key`, its row locked until `txn` ends.
pub async fn lock<C: ConnectionTrait>(txn: &C, key: &str) -> Result<Option<Row>> {
    synced::lock::<FlagDef, C>(txn, key)
        .await?
        .map(row)
        .transpose()
}

/// Every flag, by key.
pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<Row>> {
    synced::all::<FlagDef, C>(db)
        .await?
        .into_iter()
        .map(row)
        .collect()
}

/// Writes `def` at `version`, replacing what is there.
pub async fn put<C: ConnectionTrait>(db: &C, def: &FlagDef, version: i64) -> Result<()> {
    synced::put(db, def, version).await
}

/// Every rollout plan a cell holds, with its version.
pub async fn plans<C: ConnectionTrait>(db: &C) -> Result<Vec<(RolloutPlan, i64)>> {
    Ok(synced::all::<RolloutPlan, C>(db)
        .await?
        .into_iter()
        .map(|r| (r.def, r.version))
        .collect())
}

/// Stores a rollout plan at `version`, replacing an older one.
pub async fn put_plan<C: ConnectionTrait>(db: &C, p: &RolloutPlan, version: i64) -> Result<()> {
    synced::put(db, p, version).await
}
