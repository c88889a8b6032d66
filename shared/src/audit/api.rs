//! The audit log's GraphQL shapes, served by both tiers.

use async_graphql::connection::{Connection, CursorType, Edge, OpaqueCursor};
use async_graphql::{ID, InputObject, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Entry, Filter, chain};
use crate::auth::Principal;
use crate::error::{Error, Result};

/// One audited change (or refused attempt at one).
#[derive(SimpleObject)]
pub struct AuditEntry {
    /// The entry's id.
    pub id: ID,
    /// When the change was made (or refused).
    pub at: DateTime<Utc>,
    /// Who acted: the token's subject.
    pub actor: String,
    /// The roles the actor held, such as `tenant-admin`.
    pub roles: Vec<String>,
    /// The operation, named after its mutation, such as `requestBreakGlass`.
    pub action: String,
    /// The tenant the change concerns; null for platform-wide changes.
    pub tenant_id: Option<ID>,
    /// What was changed, such as a tenant id or a flag key; null when erased or not held here.
    pub target: Option<String>,
    /// OK or REFUSED.
    pub outcome: String,
    /// The id of the request that made the change, to match logs.
    pub request_id: Option<String>,
    /// The break-glass request the actor acted under, if any.
    pub break_glass_id: Option<ID>,
    /// The input and, for a refusal, the error, as JSON; `{}` when this
    /// copy does not hold the entry's values (see `detailAt`, `erased`).
    pub detail: String,
    /// `{"before": …, "after": …}` as JSON: the changed entity before and
    /// after (`before` null for a create, `after` null for a delete); null
    /// for a refusal, for a call that changed nothing in this tier's
    /// database (a replay, a no-op, a write routed to a cell: see the cell's
    /// entry), or when this copy does not hold the entry's values.
    pub diff: Option<String>,
    /// The paths of the fields the change touched (names only, no values),
    /// e.g. `doc.tenant.limits.max_users`; null without a diff.
    pub changed_fields: Option<Vec<String>>,
    /// sha256 over the entry's salt, target, detail and diff; the chain's
    /// hash covers it in their place (null for entries older than it).
    pub values_hash: Option<String>,
    /// Where the full entry (target, detail, diff) is read when this copy
    /// does not hold it: the cell whose chain it belongs to, on that cell's
    /// own `auditLog` (filter `seq`). A cell's tenants' values stay in the
    /// cell. Null when this copy holds them, or they were erased.
    pub detail_at: Option<String>,
    /// The entry's target, detail and diff were erased with its tenant's
    /// purge; its ids, hashes and changed fields remain and still chain.
    pub erased: bool,
    /// The tier whose chain holds it: `global` or a cell id.
    pub source: String,
    /// Its position in that chain.
    pub seq: i64,
    /// The hash of the entry before it in the same chain (empty for the first).
    pub prev_hash: String,
    /// sha256 over this entry and `prevHash`: changing any entry breaks every later link.
    pub hash: String,
}

impl AuditEntry {
    /// `own` names this tier's own chain (`global`, or the cell's id).
    pub fn new(e: Entry, own: &str) -> Self {
        let held = chain::holds_values(&e);
        let shipped = e.source != chain::OWN;
        Self {
            changed_fields: e
                .fields
                .as_deref()
                .and_then(|f| serde_json::from_str(f).ok()),
            values_hash: e.values_hash.clone(),
            detail_at: (!held && shipped).then(|| e.source.clone()),
            erased: !held && !shipped,
            id: ID(e.id.to_string()),
            at: e.at,
            actor: e.actor,
            roles: e
                .roles
                .split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            action: e.action,
            tenant_id: e.tenant_id.map(|t| ID(t.to_string())),
            target: e.target,
            outcome: e.outcome,
            request_id: e.request_id,
            break_glass_id: e.break_glass_id.map(|b| ID(b.to_string())),
            detail: e.detail,
            diff: e.diff,
            source: if e.source == chain::OWN {
                own.to_owned()
            } else {
                e.source
            },
            seq: e.seq,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// Narrows the audit log; every field given must match.
#[derive(InputObject, Default)]
pub struct AuditFilter {
    /// Only entries about this tenant.
    pub tenant_id: Option<ID>,
    /// Only entries by this actor (the token's subject).
    pub actor: Option<String>,
    /// Only entries of this operation, such as `setQuota`.
    pub action: Option<String>,
    /// Entries at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Entries before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only one tier's chain: `global` or a cell id (default: every tier).
    pub source: Option<String>,
    /// Only entries made under this break-glass request.
    pub break_glass_id: Option<ID>,
    /// Only the entry at this position of its chain (with `source`: one entry).
    pub seq: Option<i64>,
}

/// A page of audit entries, newest first.
pub type AuditConnection = Connection<OpaqueCursor<String>, AuditEntry>;

/// The most entries one page may hold (`first`).
pub const MAX_PAGE: i32 = 200;

/// Checks `first` and decodes `after`.
pub fn page_args(first: Option<i32>, after: Option<String>) -> Result<(u64, Option<Uuid>)> {
    let first = first.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&first) {
        return Err(Error::bad_input(
            "first",
            format!("first must be between 1 and {MAX_PAGE}"),
        ));
    }
    let after = match after {
        None => None,
        Some(c) => {
            let c = OpaqueCursor::<String>::decode_cursor(&c)
                .map_err(|_| Error::bad_input("after", "not a cursor from this API"))?;
            Some(
                Uuid::parse_str(&c.0)
                    .map_err(|_| Error::bad_input("after", "not a cursor from this API"))?,
            )
        }
    };
    Ok((first as u64, after))
}

/// The store's filter for `f` as principal `p` may see it: platform readers
/// see everything, tenant principals only their tokens' tenants (asking
/// for another tenant finds nothing). `own` is this tier's chain name.
pub fn filter(p: &Principal, f: Option<AuditFilter>, own: &str) -> Result<Filter> {
    let f = f.unwrap_or_default();
    let uuid = |field: &str, v: Option<ID>| -> Result<Option<Uuid>> {
        v.map(|v| {
            Uuid::parse_str(&v)
                .map_err(|_| Error::bad_input(field, format!("`{}` is not an id", v.0)))
        })
        .transpose()
    };
    if let (Some(a), Some(b)) = (f.from, f.to)
        && a >= b
    {
        return Err(Error::bad_input("filter.from", "from must be before to"));
    }
    let tenants = if p.reads_everything() {
        None
    } else {
        Some(p.tenants.iter().map(|t| t.0).collect())
    };
    Ok(Filter {
        tenant_id: uuid("filter.tenantId", f.tenant_id)?,
        actor: f.actor,
        action: f.action,
        from: f.from,
        to: f.to,
        tenants,
        break_glass_id: uuid("filter.breakGlassId", f.break_glass_id)?,
        source: f
            .source
            .map(|s| if s == own { chain::OWN.to_owned() } else { s }),
        seq: f.seq,
    })
}

/// A page of `rows`; `after` and `more` say whether pages come before and after it.
pub fn connection(rows: Vec<Entry>, after: bool, more: bool, own: &str) -> AuditConnection {
    let mut conn = Connection::new(after, more);
    conn.edges.extend(
        rows.into_iter()
            .map(|e| Edge::new(OpaqueCursor(e.id.to_string()), AuditEntry::new(e, own))),
    );
    conn
}

/// The first link of a chain that does not hold.
#[derive(SimpleObject)]
pub struct BrokenLink {
    /// The entry where the chain breaks; null when its tail is missing.
    pub id: Option<ID>,
    /// Its position in the chain.
    pub seq: i64,
    /// Why the link does not hold.
    pub reason: String,
}

/// What `verifyAuditChain` found.
#[derive(SimpleObject)]
pub struct ChainVerdict {
    /// Whether the whole chain holds.
    pub valid: bool,
    /// Entries checked.
    pub checked: u64,
    /// The first link that does not hold; null when the chain is valid.
    pub first_broken: Option<BrokenLink>,
}

impl From<chain::Verdict> for ChainVerdict {
    fn from(v: chain::Verdict) -> Self {
        Self {
            valid: v.valid,
            checked: v.checked,
            first_broken: v.first_broken.map(|b| BrokenLink {
                id: b.id.map(|i| ID(i.to_string())),
                seq: b.seq,
                reason: b.reason,
            }),
        }
    }
}
