//! Break-glass access: request, approve or deny, activate, revoke, and what
//! was done with it.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use serde_json::json;
use shared::IntoGql;
use shared::audit::api::{self, AuditConnection};
use shared::auth::Principal;
use shared::error::Field;
use shared::ids::{IdempotencyKey, TenantId};
use uuid::Uuid;

use super::audit::OWN;
use super::auth::caller;
use crate::State;
use crate::entity::break_glass as bg;
use crate::service::breakglass::{self, NewRequest, OPERATORS};

mirror_enum! {
    #[derive(serde::Serialize)]
    pub enum BreakGlassScope mirrors breakglass::Scope {
        Read,
        Write,
    }
}

#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum BreakGlassStatus {
    Pending,
    Approved,
    Active,
    Denied,
    Expired,
    Revoked,
}

impl BreakGlassStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => breakglass::PENDING,
            Self::Approved => breakglass::APPROVED,
            Self::Active => breakglass::ACTIVE,
            Self::Denied => breakglass::DENIED,
            Self::Expired => breakglass::EXPIRED,
            Self::Revoked => breakglass::REVOKED,
        }
    }
}

/// A request for break-glass access to one tenant.
#[derive(SimpleObject)]
pub struct BreakGlassRequest {
    pub id: ID,
    pub tenant_id: ID,
    pub requester: String,
    pub reason: String,
    /// READ or WRITE.
    pub scope: String,
    pub duration_seconds: i64,
    /// PENDING, APPROVED, ACTIVE, DENIED, EXPIRED or REVOKED.
    pub status: String,
    /// An unapproved request expires at this time.
    pub request_expires_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub denial_reason: Option<String>,
    /// Approval time + approved duration: no token outlives it.
    pub expires_at: Option<DateTime<Utc>>,
    pub activated_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<bg::Model> for BreakGlassRequest {
    fn from(m: bg::Model) -> Self {
        Self {
            id: ID(m.id.to_string()),
            tenant_id: ID(m.tenant_id.to_string()),
            requester: m.requester,
            reason: m.reason,
            scope: m.scope,
            duration_seconds: m.duration_secs,
            status: m.status,
            request_expires_at: m.request_expires_at,
            decided_by: m.decided_by,
            decided_at: m.decided_at,
            denial_reason: m.denial_reason,
            expires_at: m.expires_at,
            activated_at: m.activated_at,
            revoked_by: m.revoked_by,
            revoked_at: m.revoked_at,
            version: m.version,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// A break-glass token: scoped to the tenant, carrying the request id.
#[derive(SimpleObject)]
pub struct BreakGlassActivation {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// A revocation whose tokens may still be alive (what cells load at start).
#[derive(SimpleObject)]
pub struct BreakGlassRevocation {
    pub id: ID,
    pub until: DateTime<Utc>,
}

#[derive(InputObject, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestBreakGlassInput {
    pub tenant_id: ID,
    pub reason: String,
    pub scope: BreakGlassScope,
    pub duration_seconds: i64,
    pub idempotency_key: String,
}

fn id_arg(id: &ID) -> Result<Uuid> {
    Uuid::parse_str(id)
        .map_err(|_| shared::Error::bad_input("id", format!("`{}` is not an id", id.0)))
        .gql()
}

/// Records a refused attempt (accepted ones are audited with their change).
async fn refused<T>(
    st: &State,
    p: &Principal,
    action: &str,
    tenant: Option<Uuid>,
    target: Option<String>,
    detail: serde_json::Value,
    r: &shared::Result<T>,
) -> Result<()> {
    if r.is_err() {
        shared::audit::outcome(&st.db, p, action, tenant, target, detail, r)
            .await
            .gql()?;
    }
    Ok(())
}

#[derive(Default)]
pub struct BreakGlassQuery;

#[Object]
impl BreakGlassQuery {
    /// A break-glass request (operators see all, others their own).
    async fn break_glass_request(&self, ctx: &Context<'_>, id: ID) -> Result<BreakGlassRequest> {
        let (st, p) = caller(ctx).gql()?;
        let id = id_arg(&id)?;
        Ok(breakglass::visible(st, p, id).await.gql()?.into())
    }

    /// Break-glass requests, newest first, optionally in one status (sre, platform-admin).
    async fn break_glass_requests(
        &self,
        ctx: &Context<'_>,
        status: Option<BreakGlassStatus>,
    ) -> Result<Vec<BreakGlassRequest>> {
        let (st, p) = caller(ctx).gql()?;
        p.require_any(&OPERATORS, "breakGlassRequests").gql()?;
        let rows = breakglass::list(st, status.map(BreakGlassStatus::as_str))
            .await
            .gql()?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Audit entries made with request `id`'s tokens, on both tiers, newest first.
    async fn break_glass_activity(
        &self,
        ctx: &Context<'_>,
        id: ID,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<AuditConnection> {
        let (st, p) = caller(ctx).gql()?;
        p.require_any(&OPERATORS, "breakGlassActivity").gql()?;
        let id = id_arg(&id)?;
        let (first, after) = api::page_args(first, after).gql()?;
        let (rows, more) = breakglass::activity(st, id, first, after).await.gql()?;
        Ok(api::connection(rows, after.is_some(), more, OWN))
    }

    /// Revoked requests whose tokens may still be alive (the control plane's
    /// own identity, sre and platform-admin).
    async fn break_glass_revocations(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<BreakGlassRevocation>> {
        let (st, p) = caller(ctx).gql()?;
        if !(p.has(shared::auth::Role::Service) && p.cell.is_some()) {
            p.require_any(&OPERATORS, "breakGlassRevocations").gql()?;
        }
        let rows = breakglass::live_revocations(&st.db).await.gql()?;
        Ok(rows
            .into_iter()
            .map(|r| BreakGlassRevocation {
                id: ID(r.id.to_string()),
                until: r.until,
            })
            .collect())
    }
}

#[derive(Default)]
pub struct BreakGlassMutation;

#[Object]
impl BreakGlassMutation {
    /// Asks for READ or WRITE access to a tenant for `durationSeconds` (at
    /// most the configured maximum, 4 h by default); someone else approves.
    async fn request_break_glass(
        &self,
        ctx: &Context<'_>,
        input: RequestBreakGlassInput,
    ) -> Result<BreakGlassRequest> {
        let (st, p) = caller(ctx).gql()?;
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let tenant = input.tenant_id.parse::<TenantId>().ok().map(|t| t.0);
        let result = async {
            let key =
                IdempotencyKey::parse(&input.idempotency_key).field("input.idempotencyKey")?;
            let tenant_id: TenantId = input.tenant_id.parse().field("input.tenantId")?;
            breakglass::request(
                st,
                p,
                &key,
                NewRequest {
                    tenant_id: tenant_id.0,
                    reason: input.reason,
                    scope: input.scope.into(),
                    duration_secs: input.duration_seconds,
                },
            )
            .await
        }
        .await;
        refused(st, p, "requestBreakGlass", tenant, None, detail, &result).await?;
        Ok(result.gql()?.into())
    }

    /// Approves a pending request: sre or platform-admin, not its requester.
    async fn approve_break_glass(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: Option<i64>,
    ) -> Result<BreakGlassRequest> {
        let (st, p) = caller(ctx).gql()?;
        let bid = id_arg(&id)?;
        let result = breakglass::approve(st, p, bid, expected_version).await;
        let detail = json!({ "expectedVersion": expected_version });
        refused(
            st,
            p,
            "approveBreakGlass",
            None,
            Some(id.0),
            detail,
            &result,
        )
        .await?;
        Ok(result.gql()?.into())
    }

    /// Denies a pending request, saying why.
    async fn deny_break_glass(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
        expected_version: Option<i64>,
    ) -> Result<BreakGlassRequest> {
        let (st, p) = caller(ctx).gql()?;
        let bid = id_arg(&id)?;
        let detail = json!({ "reason": reason, "expectedVersion": expected_version });
        let result = breakglass::deny(st, p, bid, reason, expected_version).await;
        refused(st, p, "denyBreakGlass", None, Some(id.0), detail, &result).await?;
        Ok(result.gql()?.into())
    }

    /// The requester's token for an approved request: scoped to its tenant
    /// (tenant-admin for WRITE, tenant-viewer for READ), expiring at the
    /// approved window's end at the latest.
    async fn activate_break_glass(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<BreakGlassActivation> {
        let (st, p) = caller(ctx).gql()?;
        let bid = id_arg(&id)?;
        let result = breakglass::activate(st, p, bid).await;
        refused(
            st,
            p,
            "activateBreakGlass",
            None,
            Some(id.0),
            json!({}),
            &result,
        )
        .await?;
        let (token, expires_at) = result.gql()?;
        Ok(BreakGlassActivation { token, expires_at })
    }

    /// Revokes a request; its tokens are refused everywhere within a second.
    async fn revoke_break_glass(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: Option<i64>,
    ) -> Result<BreakGlassRequest> {
        let (st, p) = caller(ctx).gql()?;
        let bid = id_arg(&id)?;
        let result = breakglass::revoke(st, p, bid, expected_version).await;
        let detail = json!({ "expectedVersion": expected_version });
        refused(st, p, "revokeBreakGlass", None, Some(id.0), detail, &result).await?;
        Ok(result.gql()?.into())
    }
}
