//! Quotas on the cell's API: what the global tier forwards, and the
//! catalog as this cell holds it.

use async_graphql::{Context, ID, Object, Result};
use shared::IntoGql;
use shared::error::Field;
use shared::ids::IdempotencyKey;
use shared::quota::api::{ClearQuotaInput, MetricView, Quota, QuotaChange, SetQuotaInput};
use shared::quota::{Rule, store};

use super::config::{audited, readable};
use super::query::reader;
use crate::State;
use crate::service::quotas::{self, Change};

#[derive(Default)]
pub struct QuotaQuery;

#[derive(Default)]
pub struct QuotaMutation;

async fn kind(st: &State, metric: &str) -> shared::Result<shared::quota::Kind> {
    store::get(&st.db, metric)
        .await?
        .map(|m| m.def.kind)
        .ok_or_else(|| {
            shared::Error::bad_input("input.metric", format!("unknown metric `{metric}`"))
        })
}

#[Object]
impl QuotaQuery {
    /// The metric catalog as this cell holds it.
    async fn metrics(&self, ctx: &Context<'_>) -> Result<Vec<MetricView>> {
        let (st, _) = reader(ctx).gql()?;
        let all = store::all(&st.db).await.gql()?;
        Ok(all.into_iter().map(Into::into).collect())
    }

    /// Each metric the tenant has a limit on, and where it stands.
    async fn quotas(&self, ctx: &Context<'_>, tenant_id: ID) -> Result<Vec<Quota>> {
        let (st, p) = reader(ctx).gql()?;
        let t = readable(p, &tenant_id).gql()?;
        st.quota.quotas(t.0).await.gql()
    }
}

#[Object]
impl QuotaMutation {
    /// Overrides the plan's limit on one metric for one tenant.
    async fn set_quota(
        &self,
        ctx: &Context<'_>,
        input: SetQuotaInput,
        on_behalf_of: Option<String>,
    ) -> Result<QuotaChange> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let tenant_id = input.tenant_id.clone();
        audited(
            ctx,
            "setQuota",
            &tenant_id,
            on_behalf_of,
            detail,
            |st, t, who| async move {
                let key =
                    IdempotencyKey::parse(&input.idempotency_key).field("input.idempotencyKey")?;
                let rule = Rule {
                    limit: input.limit,
                    period: input.period,
                    burst: input.burst,
                    enforcement: input.enforcement,
                };
                rule.check(kind(st, &input.metric).await?, "input")?;
                let out = quotas::change(
                    &st.db,
                    Change {
                        tenant: t,
                        metric: input.metric,
                        rule: Some(rule),
                        expected_version: input.expected_version,
                        idempotency_key: key.to_string(),
                        actor: who,
                    },
                )
                .await;
                st.quota.invalidate(t.0);
                out
            },
        )
        .await
    }

    /// Returns one metric of one tenant to its plan's limit.
    async fn clear_quota(
        &self,
        ctx: &Context<'_>,
        input: ClearQuotaInput,
        on_behalf_of: Option<String>,
    ) -> Result<QuotaChange> {
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let tenant_id = input.tenant_id.clone();
        audited(
            ctx,
            "clearQuota",
            &tenant_id,
            on_behalf_of,
            detail,
            |st, t, who| async move {
                let key =
                    IdempotencyKey::parse(&input.idempotency_key).field("input.idempotencyKey")?;
                kind(st, &input.metric).await?;
                let out = quotas::change(
                    &st.db,
                    Change {
                        tenant: t,
                        metric: input.metric,
                        rule: None,
                        expected_version: input.expected_version,
                        idempotency_key: key.to_string(),
                        actor: who,
                    },
                )
                .await;
                st.quota.invalidate(t.0);
                out
            },
        )
        .await
    }
}
