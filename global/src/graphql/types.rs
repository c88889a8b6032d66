use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use shared::IntoGql;
use shared::ids::TenantId;
use shared::model::{CellTenant, TenantStatus};

use async_graphql::dataloader::DataLoader;

use super::loader::{CellPlans, CellProjects, CellRecords, RecordKey};
use crate::State;
use crate::entity::{cell, tenant};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CellStatus {
    /// Heartbeating; new tenants may be placed here.
    Up,
    /// Silent for longer than the heartbeat timeout.
    Down,
}

/// A regional cell.
pub struct Cell {
    pub model: cell::Model,
    /// Preloaded by listings; counted on demand otherwise.
    pub tenant_count: Option<i64>,
}

#[Object]
impl Cell {
    async fn id(&self) -> &str {
        &self.model.id
    }
    async fn region(&self) -> &str {
        &self.model.region
    }
    /// Where the global tier reaches the cell.
    async fn endpoint(&self) -> &str {
        &self.model.endpoint
    }
    async fn status(&self) -> CellStatus {
        if self.model.status == crate::service::cells::UP {
            CellStatus::Up
        } else {
            CellStatus::Down
        }
    }
    /// How many tenants the cell may hold.
    async fn capacity(&self) -> i64 {
        self.model.capacity
    }
    /// Live tenants (neither deleted nor failed) whose home is this cell.
    async fn tenant_count(&self, ctx: &Context<'_>) -> Result<i64> {
        if let Some(n) = self.tenant_count {
            return Ok(n);
        }
        let st = ctx.data_unchecked::<State>();
        let counts = crate::service::cells::tenant_counts(&st.db).await.gql()?;
        Ok(counts.get(&self.model.id).copied().unwrap_or(0))
    }
    async fn last_heartbeat_at(&self) -> DateTime<Utc> {
        self.model.last_heartbeat_at
    }
    /// Relative share of new tenants.
    async fn weight(&self) -> i64 {
        self.model.weight
    }
    async fn labels(&self) -> Vec<Label> {
        serde_json::from_str::<std::collections::BTreeMap<String, String>>(&self.model.labels)
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| Label { key, value })
            .collect()
    }
    /// Increases with every operator change of the cell (`setCellState`
    /// takes it as `expectedVersion`).
    async fn version(&self) -> i64 {
        self.model.version
    }
    /// Whether new tenants may be placed here (set by an operator).
    async fn state(&self) -> CellState {
        if self.model.state == crate::service::cells::DRAINING {
            CellState::Draining
        } else {
            CellState::Accepting
        }
    }
}

/// A tenant: its directory row here, its record in its home cell.
pub struct Tenant(pub tenant::Model);

impl Tenant {
    fn key(&self) -> RecordKey {
        RecordKey {
            cell: self.0.cell_id.clone(),
            id: TenantId(self.0.id),
        }
    }

    /// The record from the home cell, batched per cell. `None` while the
    /// tenant is still being provisioned there.
    async fn record(&self, ctx: &Context<'_>) -> Result<Option<CellTenant>> {
        if self.0.cell_id.is_empty() {
            return Ok(None);
        }
        let loader = ctx.data_unchecked::<async_graphql::dataloader::DataLoader<CellRecords>>();
        let key = RecordKey {
            cell: self.0.cell_id.clone(),
            id: TenantId(self.0.id),
        };
        let fetched = match loader.load_one(key).await {
            Ok(v) => v,
            Err(never) => match never {},
        };
        match fetched {
            Some(Ok(rec)) => Ok(Some(rec)),
            Some(Err(e)) => Err(shared::Error::from(e).into_gql()),
            None if self.0.status != TenantStatus::Active.as_str() => Ok(None),
            None => Err(shared::Error::NotFound(format!(
                "cell {} holds no record of tenant {}",
                self.0.cell_id, self.0.id
            ))
            .into_gql()),
        }
    }
}

#[Object]
impl Tenant {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Unique DNS label.
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    /// The home region: the only place the tenant's data is stored.
    async fn region(&self) -> &str {
        &self.0.region
    }
    async fn status(&self) -> Result<TenantStatus> {
        TenantStatus::parse(&self.0.status)
            .map_err(|e| shared::Error::internal(anyhow::anyhow!(e.0)))
            .gql()
    }
    /// Increases with every change to the tenant.
    async fn version(&self) -> i64 {
        self.0.version
    }
    /// While DEPROVISIONING: when the grace period ends and the tenant is purged.
    async fn purge_at(&self) -> Option<DateTime<Utc>> {
        self.0.purge_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The home cell (null until the tenant is placed).
    async fn cell(&self, ctx: &Context<'_>) -> Result<Option<Cell>> {
        if self.0.cell_id.is_empty() {
            return Ok(None);
        }
        let st = ctx.data_unchecked::<State>();
        let model = st.cells.get(&self.0.cell_id).ok_or_else(|| {
            shared::Error::Unavailable(format!("cell {} is not registered", self.0.cell_id))
                .into_gql()
        })?;
        Ok(Some(Cell {
            model,
            tenant_count: None,
        }))
    }
    /// How its provisioning saga went, step by step.
    async fn provisioning(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<super::lifecycle::Provisioning>> {
        let st = ctx.data_unchecked::<State>();
        super::lifecycle::Provisioning::load(st, TenantId(self.0.id))
            .await
            .gql()
    }
    /// Its projects and their environments, from the home cell (empty
    /// while it is provisioned and once it FAILED); batched per cell.
    async fn projects(&self, ctx: &Context<'_>) -> Result<Vec<shared::projects::Project>> {
        let unmade = [
            TenantStatus::Pending,
            TenantStatus::Provisioning,
            TenantStatus::Failed,
        ];
        if self.0.cell_id.is_empty() || unmade.iter().any(|s| s.as_str() == self.0.status) {
            return Ok(Vec::new());
        }
        let loader = ctx.data_unchecked::<DataLoader<CellProjects>>();
        match loader.load_one(self.key()).await {
            Ok(Some(Ok(projects))) => Ok(projects),
            Ok(Some(Err(e))) => Err(shared::Error::from(e).into_gql()),
            Ok(None) => Ok(Vec::new()),
            Err(never) => match never {},
        }
    }
    /// Its plan's quotas and effective entitlements, from the home cell
    /// (null while it is provisioned and once it FAILED); batched per cell.
    async fn plan_details(&self, ctx: &Context<'_>) -> Result<Option<shared::plans::TenantPlan>> {
        let unmade = [
            TenantStatus::Pending,
            TenantStatus::Provisioning,
            TenantStatus::Failed,
            TenantStatus::Deleted,
        ];
        if self.0.cell_id.is_empty() || unmade.iter().any(|s| s.as_str() == self.0.status) {
            return Ok(None);
        }
        let loader = ctx.data_unchecked::<DataLoader<CellPlans>>();
        match loader.load_one(self.key()).await {
            Ok(Some(Ok(plan))) => Ok(Some(plan)),
            Ok(Some(Err(e))) => Err(shared::Error::from(e).into_gql()),
            Ok(None) => Err(shared::Error::NotFound(format!(
                "cell {} holds no record of tenant {}",
                self.0.cell_id, self.0.id
            ))
            .into_gql()),
            Err(never) => match never {},
        }
    }
    /// Its members and their roles.
    async fn members(&self, ctx: &Context<'_>) -> Result<Vec<super::members::Member>> {
        let st = ctx.data_unchecked::<State>();
        Ok(crate::service::members::list(&st.db, TenantId(self.0.id))
            .await
            .gql()?
            .into_iter()
            .map(Into::into)
            .collect())
    }
    /// Display name, read from the home cell (null while provisioning;
    /// an UNAVAILABLE error when the cell cannot be reached).
    async fn name(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        Ok(self.record(ctx).await?.map(|r| r.name))
    }
    /// Plan, read from the home cell.
    async fn plan(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        Ok(self.record(ctx).await?.map(|r| r.plan))
    }
    /// Last change of the tenant's record in its home cell.
    async fn updated_at(&self, ctx: &Context<'_>) -> Result<Option<DateTime<Utc>>> {
        Ok(self.record(ctx).await?.map(|r| r.updated_at))
    }
}

#[derive(InputObject)]
pub struct CreateTenantInput {
    /// Retrying with the same key returns the same tenant; another input with it is a CONFLICT.
    pub idempotency_key: String,
    /// Unique DNS label: lowercase letters, digits and '-', 3 to 63 characters.
    pub slug: String,
    pub name: String,
    /// A region with registered cells, such as `eu-west-1`.
    pub region: String,
    /// A plan name such as `free`, `pro` or `enterprise`.
    pub plan: String,
    /// The subject (JWT `sub`) who becomes its first owner; the caller when left out.
    pub owner: Option<String>,
}

#[derive(InputObject, Default)]
pub struct TenantFilter {
    pub region: Option<String>,
    pub cell_id: Option<ID>,
    pub status: Option<TenantStatus>,
}

#[derive(InputObject)]
pub struct RegisterCellInput {
    pub id: ID,
    pub region: String,
    pub endpoint: String,
    pub capacity: i64,
    /// What the cell counts itself; informational.
    pub tenant_count: Option<i64>,
    /// Relative share of new tenants (at least 1); kept when left out.
    pub weight: Option<i64>,
    /// Placement labels such as `pool=dedicated`; kept when left out.
    pub labels: Option<Vec<Label>>,
}

/// A placement label of a cell.
#[derive(InputObject, SimpleObject, Clone, Debug)]
#[graphql(input_name = "LabelInput")]
pub struct Label {
    pub key: String,
    pub value: String,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CellState {
    /// New tenants may be placed here.
    Accepting,
    /// Keeps its tenants; no new ones.
    Draining,
}

impl CellState {
    pub fn as_str(self) -> &'static str {
        match self {
            CellState::Accepting => crate::service::cells::ACCEPTING,
            CellState::Draining => crate::service::cells::DRAINING,
        }
    }
}

mirror_enum! {
    /// Why a cell was not chosen.
    pub enum PlacementRule mirrors crate::service::placement::Rule {
        /// Another region: data never leaves its region.
        Region,
        /// Not heartbeating.
        Down,
        /// An operator stopped new placements.
        Draining,
        /// A maintenance window in progress covers the cell.
        Maintenance,
        /// The plan requires a label this cell lacks.
        PlanIsolation,
        /// At capacity.
        Capacity,
        /// Eligible, but more loaded (by weighted share) than the chosen cell.
        Load,
    }
}

#[derive(SimpleObject)]
pub struct TotalCount {
    /// Tenants matching the filter, across all pages.
    pub total_count: u64,
}

#[derive(InputObject)]
pub struct DefineConfigKeyInput {
    /// Lowercase, with '.', '_' or '-': `limits.max_users`.
    pub key: String,
    #[graphql(name = "type")]
    pub value_type: shared::configkeys::ValueType,
    pub default: async_graphql::Json<serde_json::Value>,
    pub scopes: Vec<shared::configkeys::Scope>,
    #[graphql(default)]
    pub description: String,
    pub min: Option<i64>,
    pub max: Option<i64>,
    #[graphql(name = "enum")]
    pub allowed: Option<Vec<String>>,
    pub pattern: Option<String>,
    /// For a JSON key: a JSON Schema every value must satisfy (no remote `$ref`s).
    pub json_schema: Option<async_graphql::Json<serde_json::Value>>,
    /// Required to change an existing key: its current version (0 or absent to create).
    pub expected_version: Option<i64>,
}
