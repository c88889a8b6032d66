use sea_orm::entity::prelude::*;

/// A tenant's provisioning saga: what was asked, how far it got, who drives
/// it (the lease) and until when it may keep retrying (the deadline).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "provisioning_sagas")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    pub idempotency_key: String,
    pub actor: String,
    /// The createTenant input, JSON.
    #[sea_orm(column_type = "Text")]
    pub input: String,
    /// RUNNING, COMPENSATING, DONE or FAILED.
    pub status: String,
    /// Why it failed, for a person to act on.
    #[sea_orm(column_type = "Text", nullable)]
    pub reason: Option<String>,
    pub deadline_at: DateTimeUtc,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
