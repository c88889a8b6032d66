//! Placement as operators see it: a preview that explains every cell, and
//! draining a cell.

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use serde_json::json;
use shared::IntoGql;
use shared::audit;
use shared::auth::Role;
use shared::error::Field;
use shared::ids::{CellId, IdempotencyKey, Plan, Region};

use super::auth::caller;
use super::types::{Cell, CellState, PlacementRule};
use crate::service::{cells, placement};

#[derive(Default)]
pub struct PlacementQuery;

#[derive(Default)]
pub struct PlacementMutation;

/// A cell the rule ruled out, and which rule.
#[derive(SimpleObject)]
pub struct RejectedCell {
    pub cell: Cell,
    pub rule: PlacementRule,
}

/// Where a new tenant would go now, and why not elsewhere.
#[derive(SimpleObject)]
pub struct PlacementPreview {
    /// Null when no cell qualifies.
    pub cell: Option<Cell>,
    pub rejected: Vec<RejectedCell>,
}

fn view(model: crate::entity::cell::Model) -> Cell {
    Cell {
        model,
        tenant_count: None,
    }
}

#[Object]
impl PlacementQuery {
    /// Runs the placement rule for a tenant of `plan` in `region` without
    /// placing anything.
    async fn placement_preview(
        &self,
        ctx: &Context<'_>,
        region: String,
        plan: String,
    ) -> Result<PlacementPreview> {
        let (st, p) = caller(ctx).gql()?;
        p.require_any(&[Role::PlatformAdmin, Role::Sre], "placementPreview")
            .gql()?;
        let region = Region::parse(&region).field("region").gql()?;
        let plan = Plan::parse(&plan).field("plan").gql()?;
        if !st.plans.contains(&plan) {
            return Err(
                shared::Error::bad_input("plan", format!("unknown plan `{plan}`")).into_gql(),
            );
        }
        let counts = cells::tenant_counts(&st.db).await.gql()?;
        let d = placement::evaluate(
            &region,
            &plan,
            &crate::service::maintenance::placement_view(st)
                .await
                .gql()?,
            &counts,
            &st.provisioning.placement_policy,
        );
        Ok(PlacementPreview {
            cell: d.chosen.map(view),
            rejected: d
                .rejected
                .into_iter()
                .map(|(c, rule)| RejectedCell {
                    cell: view(c),
                    rule: rule.into(),
                })
                .collect(),
        })
    }
}

#[Object]
impl PlacementMutation {
    /// ACCEPTING or DRAINING: a draining cell keeps its tenants and gets no
    /// new ones. `expectedVersion` is the cell's version (a stale one is a
    /// CONFLICT); setting the state it has is a no-op. A retry with the same
    /// `idempotencyKey` and input gets the cell back instead of a CONFLICT.
    async fn set_cell_state(
        &self,
        ctx: &Context<'_>,
        cell_id: ID,
        state: CellState,
        expected_version: i64,
        idempotency_key: String,
    ) -> Result<Cell> {
        let (st, p) = caller(ctx).gql()?;
        let detail = json!({ "cellId": cell_id.as_str(), "state": state.as_str(), "expectedVersion": expected_version, "idempotencyKey": idempotency_key });
        let target = Some(cell_id.to_string());
        let trail = audit::Trail::new(p, "setCellState", detail.clone());
        let result = trail
            .scope(async {
                p.require_any(&[Role::PlatformAdmin], "setCellState")?;
                let id = CellId::parse(&cell_id).field("cellId")?;
                let key = IdempotencyKey::parse(&idempotency_key).field("idempotencyKey")?;
                cells::set_state(
                    &st.db,
                    &st.cells,
                    &p.subject,
                    &key,
                    &id,
                    state.as_str(),
                    expected_version,
                )
                .await
            })
            .await;
        trail.finish(&st.db, None, target, &result).await.gql()?;
        Ok(view(result.gql()?))
    }
}
