//! What this cell applied from the global tier, per kind of entity, for
//! the global tier's anti-entropy pass.

use async_graphql::{Context, Object, Result, SimpleObject};
use shared::IntoGql;
use shared::sync::digest;

use super::query::reader;

#[derive(Default)]
pub struct SyncQuery;

#[derive(SimpleObject)]
pub struct SyncEntity {
    pub entity: String,
    pub version: i64,
}

/// The (entity, version) pairs of one kind this cell applied.
#[derive(SimpleObject)]
pub struct SyncVersions {
    pub kind: String,
    pub count: i64,
    /// SHA-256 over the sorted `entity\tversion` lines.
    pub digest: String,
    pub entities: Vec<SyncEntity>,
}

fn valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 64
        && kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[Object]
impl SyncQuery {
    /// `kind` is an entity prefix such as `config-key`.
    async fn sync_versions(&self, ctx: &Context<'_>, kind: String) -> Result<SyncVersions> {
        let (st, p) = reader(ctx).gql()?;
        if !p.reads_everything() {
            return Err(shared::Error::Forbidden(
                "sync state is for the control plane, platform-admin and sre".into(),
            )
            .into_gql());
        }
        if !valid_kind(&kind) {
            return Err(shared::Error::bad_input(
                "kind",
                "a kind is lowercase letters, digits and '-', such as `config-key`",
            )
            .into_gql());
        }
        let versions = digest::applied(&st.db, &kind).await.gql()?;
        Ok(SyncVersions {
            count: versions.len() as i64,
            digest: digest::digest(&versions),
            entities: versions
                .into_iter()
                .map(|(entity, version)| SyncEntity { entity, version })
                .collect(),
            kind,
        })
    }
}
