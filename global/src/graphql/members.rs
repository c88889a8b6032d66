//! Members and their roles, and ownership transfer.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::IntoGql;
use shared::audit;
use shared::error::Field;
use shared::ids::{IdempotencyKey, TenantId};

use super::auth::caller;
use crate::entity::member;
use crate::service::members::{self, Level};

/// A subject with a role in a tenant.
#[derive(SimpleObject)]
pub struct Member {
    pub subject: String,
    /// owner, admin, member or viewer.
    pub role: String,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

impl From<member::Model> for Member {
    fn from(m: member::Model) -> Self {
        Self {
            subject: m.subject,
            role: m.role,
            version: m.version,
            updated_at: m.updated_at,
        }
    }
}

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddMemberInput {
    pub tenant_id: ID,
    /// The JWT `sub` of the person or system.
    pub subject: String,
    pub role: String,
    pub idempotency_key: String,
}

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeMemberRoleInput {
    pub tenant_id: ID,
    pub subject: String,
    pub role: String,
    /// The membership's version.
    pub expected_version: i64,
}

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveMemberInput {
    pub tenant_id: ID,
    pub subject: String,
    pub expected_version: i64,
}

#[derive(InputObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferOwnershipInput {
    pub tenant_id: ID,
    /// A member who becomes owner; the caller becomes admin.
    pub to: String,
    /// The new owner's membership version.
    pub expected_version: i64,
}

#[derive(Default)]
pub struct MembersMutation;

/// Checks the caller's level, runs `f`, audits the outcome.
async fn audited<F, Fut>(
    ctx: &Context<'_>,
    action: &str,
    tenant_id: &ID,
    need: Level,
    detail: serde_json::Value,
    f: F,
) -> Result<Member>
where
    F: FnOnce(crate::State, String, Level, TenantId) -> Fut,
    Fut: std::future::Future<Output = shared::Result<member::Model>>,
{
    let (st, p) = caller(ctx).gql()?;
    let trail = audit::Trail::new(p, action, detail.clone());
    let result = trail
        .scope(async {
            let t: TenantId = tenant_id.parse().field("input.tenantId")?;
            let have = members::require(&st.db, p, t, need, action).await?;
            crate::service::directory::writable(&st.db, t).await?;
            f(st.clone(), p.subject.clone(), have, t)
                .await
                .map(|m| (t, m))
        })
        .await;
    let tenant = result.as_ref().ok().map(|(t, _)| t.0);
    trail.finish(&st.db, tenant, None, &result).await.gql()?;
    Ok(result.gql()?.1.into())
}

#[Object]
impl MembersMutation {
    /// Adds a member (admins add non-owners; owners add anyone).
    async fn add_member(&self, ctx: &Context<'_>, input: AddMemberInput) -> Result<Member> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        audited(
            ctx,
            "addMember",
            &input.tenant_id.clone(),
            Level::Admin,
            detail,
            |st, _, have, t| async move {
                let key =
                    IdempotencyKey::parse(&input.idempotency_key).field("input.idempotencyKey")?;
                members::add(&st.db, have, t, &input.subject, &input.role, key.as_str()).await
            },
        )
        .await
    }

    /// Changes a member's role; the last owner cannot be demoted.
    async fn change_member_role(
        &self,
        ctx: &Context<'_>,
        input: ChangeMemberRoleInput,
    ) -> Result<Member> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        audited(
            ctx,
            "changeMemberRole",
            &input.tenant_id.clone(),
            Level::Admin,
            detail,
            |st, _, have, t| async move {
                members::change_role(
                    &st.db,
                    have,
                    t,
                    &input.subject,
                    &input.role,
                    input.expected_version,
                )
                .await
            },
        )
        .await
    }

    /// Removes a member; the last owner cannot be removed.
    async fn remove_member(&self, ctx: &Context<'_>, input: RemoveMemberInput) -> Result<Member> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        audited(
            ctx,
            "removeMember",
            &input.tenant_id.clone(),
            Level::Admin,
            detail,
            |st, _, have, t| async move {
                let removed =
                    members::remove(&st.db, have, t, &input.subject, input.expected_version)
                        .await?;
                // Subscriptions that relied on the membership end, on every replica.
                st.session_ends
                    .publish(shared::server::SessionEnd {
                        subject: input.subject.clone(),
                        tenant: Some(t),
                    })
                    .await;
                Ok(removed)
            },
        )
        .await
    }

    /// Makes another member the owner; the calling owner becomes admin.
    async fn transfer_ownership(
        &self,
        ctx: &Context<'_>,
        input: TransferOwnershipInput,
    ) -> Result<Member> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        audited(
            ctx,
            "transferOwnership",
            &input.tenant_id.clone(),
            Level::Owner,
            detail,
            |st, me, _, t| async move {
                members::transfer_ownership(&st.db, &me, t, &input.to, input.expected_version).await
            },
        )
        .await
    }
}
