//! The metric catalog, tenant quotas and usage on the global API. The
//! catalog lives here; quotas live in the tenant's home cell, where every
//! read and write is routed; usage comes from the cells' rollups.

use async_graphql::{Context, ID, Object, Result};
use chrono::{DateTime, Utc};
use shared::IntoGql;
use shared::audit;
use shared::auth::Role;
use shared::error::Field;
use shared::ids::TenantId;
use shared::quota::api::{
    ClearQuotaInput, DefineMetricInput, Granularity, MetricView, Quota, QuotaChange, SetQuotaInput,
    UsagePoint,
};
use shared::quota::store;

use super::auth::caller;
use super::config::audited;
use crate::service::members::Level;
use crate::service::tenant_cell::{self, metric_kind};
use crate::service::{directory, metrics_catalog, usage};

#[derive(Default)]
pub struct QuotaQuery;

#[derive(Default)]
pub struct QuotaMutation;

#[Object]
impl QuotaQuery {
    /// The metric catalog.
    async fn metrics(&self, ctx: &Context<'_>) -> Result<Vec<MetricView>> {
        let (st, _) = caller(ctx).gql()?;
        let all = store::all(&st.db).await.gql()?;
        Ok(all.into_iter().map(Into::into).collect())
    }

    /// Each metric the tenant has a limit on: limit, used, remaining,
    /// resetAt and whether it comes from the plan or an override.
    async fn quotas(&self, ctx: &Context<'_>, tenant_id: ID) -> Result<Vec<Quota>> {
        let (st, p) = caller(ctx).gql()?;
        let home = tenant_cell::route(st, p, &tenant_id, Level::Viewer, "quotas")
            .await
            .gql()?;
        home.quotas().await.gql()
    }

    /// The tenant's usage of `metric` in `[from, to)`, per bucket, from the
    /// rollups every cell sends.
    async fn usage(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        metric: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        #[graphql(default_with = "Granularity::Hour")] granularity: Granularity,
    ) -> Result<Vec<UsagePoint>> {
        let (st, p) = caller(ctx).gql()?;
        let t: TenantId = tenant_id.parse().field("tenantId").gql()?;
        let not_found = || shared::Error::NotFound(format!("tenant {t} not found"));
        if !p.can_read_tenant(t) {
            return Err(not_found().into_gql());
        }
        directory::get(&st.db, t)
            .await
            .gql()?
            .ok_or_else(not_found)
            .gql()?;
        metric_kind(st, &metric, "metric").await.gql()?;
        usage::query(&st.db, t.0, &metric, from, to, granularity)
            .await
            .gql()
    }
}

#[Object]
impl QuotaMutation {
    /// Defines a metric, or changes one (with `expectedVersion`; its kind
    /// never changes). The same definition again is a no-op; every change
    /// reaches every cell.
    async fn define_metric(
        &self,
        ctx: &Context<'_>,
        input: DefineMetricInput,
    ) -> Result<MetricView> {
        let (st, p) = caller(ctx).gql()?;
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let target = Some(input.name.clone());
        let trail = audit::Trail::new(p, "defineMetric", detail.clone());
        let result = trail
            .scope(async {
                p.require_any(&[Role::PlatformAdmin], "defineMetric")?;
                metrics_catalog::define(st, input.def(), input.expected_version).await
            })
            .await;
        trail.finish(&st.db, None, target, &result).await.gql()?;
        Ok(result.gql()?.into())
    }

    /// Overrides the plan's limit on one metric for one tenant, in its home cell.
    async fn set_quota(&self, ctx: &Context<'_>, input: SetQuotaInput) -> Result<QuotaChange> {
        let (st, p) = caller(ctx).gql()?;
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let action = "setQuota";
        audited(st, p, action, &input.tenant_id, detail, async {
            let home = tenant_cell::route(st, p, &input.tenant_id, Level::Member, action).await?;
            Ok((home.tenant, home.set_quota(&input).await?))
        })
        .await
    }

    /// Returns one metric of one tenant to its plan's limit.
    async fn clear_quota(&self, ctx: &Context<'_>, input: ClearQuotaInput) -> Result<QuotaChange> {
        let (st, p) = caller(ctx).gql()?;
        let detail = serde_json::to_value(&input).unwrap_or_default();
        let action = "clearQuota";
        audited(st, p, action, &input.tenant_id, detail, async {
            let home = tenant_cell::route(st, p, &input.tenant_id, Level::Member, action).await?;
            Ok((home.tenant, home.clear_quota(&input).await?))
        })
        .await
    }
}
