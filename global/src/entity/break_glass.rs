use sea_orm::entity::prelude::*;

/// A break-glass request: who asked for which access to which tenant, and
/// where it stands (PENDING → APPROVED → ACTIVE, or DENIED, EXPIRED, REVOKED).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "break_glass_requests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub requester: String,
    #[sea_orm(column_type = "Text")]
    pub reason: String,
    /// READ or WRITE.
    pub scope: String,
    pub duration_secs: i64,
    pub status: String,
    /// An unapproved request expires at this time.
    pub request_expires_at: DateTimeUtc,
    /// Who approved or denied it.
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub denial_reason: Option<String>,
    /// Approval time + approved duration: no token outlives it.
    pub expires_at: Option<DateTimeUtc>,
    pub activated_at: Option<DateTimeUtc>,
    pub revoked_by: Option<String>,
    pub revoked_at: Option<DateTimeUtc>,
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
