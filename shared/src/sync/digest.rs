//! Anti-entropy: what a replica holds, per kind of entity, as
//! `entity → version`, a digest of it, and how it differs from the owner's.
//! Comparing digests is cheap; only a mismatch needs the full lists.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sha2::{Digest as _, Sha256};

use crate::Result;

/// `entity → version`, ordered by entity.
pub type Versions = BTreeMap<String, i64>;

/// A digest of `versions`: equal sets give equal digests.
pub fn digest(versions: &Versions) -> String {
    let mut h = Sha256::new();
    for (entity, version) in versions {
        h.update(entity.as_bytes());
        h.update(b"\t");
        h.update(version.to_string().as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// How a replica differs from the owner.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Older in the replica, or missing there: republishing repairs them.
    pub behind: Vec<String>,
    /// Newer in the replica than in the owner, or unknown to the owner
    /// (the owner lost state, e.g. restored from an old backup).
    pub ahead: Vec<String>,
}

impl Divergence {
    /// Whether the replica matches the owner.
    pub fn is_empty(&self) -> bool {
        self.behind.is_empty() && self.ahead.is_empty()
    }

    /// How many entities differ, either way.
    pub fn len(&self) -> usize {
        self.behind.len() + self.ahead.len()
    }
}

/// How `replica` differs from `owner`; each list in entity order.
pub fn diff(owner: &Versions, replica: &Versions) -> Divergence {
    let mut d = Divergence::default();
    for (entity, v) in owner {
        match replica.get(entity) {
            Some(r) if r == v => {}
            Some(r) if r > v => d.ahead.push(entity.clone()),
            _ => d.behind.push(entity.clone()),
        }
    }
    for entity in replica.keys() {
        if !owner.contains_key(entity) {
            d.ahead.push(entity.clone());
        }
    }
    d
}

/// What this database applied of one kind: the `sync_applied` rows whose
/// entity starts with `kind` followed by `:`.
pub async fn applied<C: ConnectionTrait>(db: &C, kind: &str) -> Result<Versions> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT entity, version FROM sync_applied WHERE entity >= $1 AND entity < $2"
        }
        _ => "SELECT entity, version FROM sync_applied WHERE entity >= ? AND entity < ?",
    };
    // `kind:` ≤ entity < `kind;` (';' follows ':' in ASCII): an index range scan.
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [format!("{kind}:").into(), format!("{kind};").into()],
        ))
        .await?;
    let mut out = Versions::new();
    for r in rows {
        out.insert(r.try_get("", "entity")?, r.try_get("", "version")?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(pairs: &[(&str, i64)]) -> Versions {
        pairs.iter().map(|(e, v)| (e.to_string(), *v)).collect()
    }

    #[test]
    fn digests_depend_on_every_pair() {
        let a = v(&[("k:a", 1), ("k:b", 2)]);
        assert_eq!(digest(&a), digest(&a.clone()));
        assert_ne!(digest(&a), digest(&v(&[("k:a", 1), ("k:b", 3)])));
        assert_ne!(digest(&a), digest(&v(&[("k:a", 1)])));
        assert_ne!(digest(&v(&[("k:a", 12)])), digest(&v(&[("k:a1", 2)])));
    }

    #[test]
    fn diff_names_what_is_behind_and_ahead() {
        let owner = v(&[("k:a", 2), ("k:b", 1), ("k:c", 4)]);
        let replica = v(&[("k:a", 1), ("k:c", 5), ("k:z", 1)]);
        let d = diff(&owner, &replica);
        assert_eq!(d.behind, vec!["k:a", "k:b"]);
        assert_eq!(d.ahead, vec!["k:c", "k:z"]);
        assert!(diff(&owner, &owner).is_empty());
    }
}
