//! The registry table, the same on both tiers: the global tier writes it
//! through mutations, cells through the sync stream. A synced kind of
//! [`crate::synced`].

use sea_orm::{ConnectionTrait, Value};

use super::KeyDef;
use crate::Result;
use crate::synced::{self, Definition, Table};

impl Definition for KeyDef {
    const TABLE: Table = Table::keyed("config_keys", "key");
    const STREAM: &'static str = super::STREAM;
    fn key(&self) -> Value {
        self.key.clone().into()
    }
    fn entity(&self) -> String {
        super::entity(&self.key)
    }
}

/// Creates the registry table.
pub const MIGRATION: synced::Migration = synced::Migration {
    name: "m0102_create_config_keys",
    tables: &[KeyDef::TABLE],
};

/// A stored definition with its version.
pub type Stored = synced::Stored<KeyDef>;

/// The config key `key` with its version, if it is defined.
pub async fn get<C: ConnectionTrait>(db: &C, key: &str) -> Result<Option<Stored>> {
    Ok(synced::get::<KeyDef, C>(db, key)
        .await?
        .map(synced::Row::stored))
}

/// Every key, by key.
pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<Stored>> {
    Ok(synced::all::<KeyDef, C>(db)
        .await?
        .into_iter()
        .map(synced::Row::stored)
        .collect())
}

/// Writes `def` at `version`, replacing what is there.
pub async fn put<C: ConnectionTrait>(db: &C, def: &KeyDef, version: i64) -> Result<()> {
    synced::put(db, def, version).await
}
