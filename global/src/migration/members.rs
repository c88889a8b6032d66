//! Members are looked up by a case-insensitive key of their subject
//! (`shared::names::subject_key`), unique per tenant, so `Bob` and `bob`
//! are one member. The subject keeps the case it was given in for display.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, Value};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveIden)]
enum Members {
    Table,
    TenantId,
    Subject,
    SubjectKey,
    Role,
    CreatedAt,
}

pub struct AddMemberSubjectKey;

impl MigrationName for AddMemberSubjectKey {
    fn name(&self) -> &str {
        "m0022_members_subject_key"
    }
}

fn rank(role: &str) -> u8 {
    match role {
        "owner" => 4,
        "admin" => 3,
        "member" => 2,
        "viewer" => 1,
        _ => 0,
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddMemberSubjectKey {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Members::Table)
                    .add_column(string(Members::SubjectKey).default(""))
                    .to_owned(),
            )
            .await?;
        backfill(manager.get_connection()).await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_members_tenant_subject_key")
                    .table(Members::Table)
                    .col(Members::TenantId)
                    .col(Members::SubjectKey)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_members_subject_key")
                    .table(Members::Table)
                    .col(Members::SubjectKey)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

/// Fills the key of every existing membership. Memberships of one tenant
/// whose subjects differ only in case (or normalisation) name one person:
/// the one with the highest role (the oldest on a tie) stays, which is the
/// level lookups by key would have given that person anyway.
async fn backfill<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    let rows = db
        .query_all(
            &Query::select()
                .columns([
                    Members::TenantId,
                    Members::Subject,
                    Members::Role,
                    Members::CreatedAt,
                ])
                .from(Members::Table)
                .order_by(Members::CreatedAt, Order::Asc)
                .to_owned(),
        )
        .await?;
    let mut kept: HashMap<(uuid::Uuid, String), (String, String)> = HashMap::new();
    let mut gone: Vec<(uuid::Uuid, String)> = Vec::new();
    for row in rows {
        let tenant: uuid::Uuid = row.try_get("", "tenant_id")?;
        let subject: String = row.try_get("", "subject")?;
        let role: String = row.try_get("", "role")?;
        let key = shared::names::subject_key(&subject);
        match kept.get_mut(&(tenant, key.clone())) {
            Some(held) if rank(&role) > rank(&held.1) => {
                gone.push((tenant, std::mem::replace(held, (subject, role)).0));
            }
            Some(_) => gone.push((tenant, subject)),
            None => {
                kept.insert((tenant, key), (subject, role));
            }
        }
    }
    for (tenant, subject) in gone {
        tracing::warn!(%tenant, subject, "membership merged into one whose subject differs only in case");
        db.execute(
            &Query::delete()
                .from_table(Members::Table)
                .and_where(Expr::col(Members::TenantId).eq(tenant))
                .and_where(Expr::col(Members::Subject).eq(subject))
                .to_owned(),
        )
        .await?;
    }
    for ((tenant, key), (subject, _)) in kept {
        db.execute(
            &Query::update()
                .table(Members::Table)
                .value(Members::SubjectKey, Value::from(key))
                .and_where(Expr::col(Members::TenantId).eq(tenant))
                .and_where(Expr::col(Members::Subject).eq(subject))
                .to_owned(),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::member;
    use sea_orm::{ConnectOptions, Database, EntityTrait, QueryOrder};

    async fn add(
        db: &impl ConnectionTrait,
        tenant: uuid::Uuid,
        subject: &str,
        role: &str,
        age: i64,
    ) {
        let at = chrono::Utc::now() - chrono::Duration::seconds(age);
        db.execute(
            &Query::insert()
                .into_table(Members::Table)
                .columns([
                    Alias::new("tenant_id"),
                    Alias::new("subject"),
                    Alias::new("role"),
                    Alias::new("version"),
                    Alias::new("created_at"),
                    Alias::new("updated_at"),
                ])
                .values_panic([
                    tenant.into(),
                    subject.into(),
                    role.into(),
                    1i64.into(),
                    at.into(),
                    at.into(),
                ])
                .to_owned(),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn keys_are_filled_and_subjects_differing_in_case_become_one_member() {
        let mut opts = ConnectOptions::new("sqlite::memory:");
        opts.max_connections(1).min_connections(1);
        let db = Database::connect(opts).await.unwrap();
        let m = SchemaManager::new(&db);
        super::super::CreateMembers.up(&m).await.unwrap();
        let (t1, t2) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        add(&db, t1, "Olive", "owner", 30).await;
        add(&db, t1, "bob", "viewer", 20).await;
        add(&db, t1, "BOB", "admin", 10).await;
        add(&db, t1, "Bob", "admin", 5).await;
        add(&db, t1, "Jose\u{301}", "member", 3).await;
        add(&db, t1, "JOSÉ", "member", 1).await;
        add(&db, t2, "bob", "viewer", 1).await;

        AddMemberSubjectKey.up(&m).await.unwrap();
        let rows = member::Entity::find()
            .order_by_asc(member::Column::TenantId)
            .order_by_asc(member::Column::SubjectKey)
            .all(&db)
            .await
            .unwrap();
        let got: Vec<(uuid::Uuid, &str, &str, &str)> = rows
            .iter()
            .map(|r| {
                (
                    r.tenant_id,
                    r.subject.as_str(),
                    r.subject_key.as_str(),
                    r.role.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                // The highest role stays; on a tie, the oldest.
                (t1, "BOB", "bob", "admin"),
                (t1, "Jose\u{301}", "jos\u{e9}", "member"),
                (t1, "Olive", "olive", "owner"),
                (t2, "bob", "bob", "viewer"),
            ]
        );
        // The key is unique per tenant from now on.
        let mut dup =
            sea_orm::ActiveModelTrait::reset_all(member::ActiveModel::from(rows[3].clone()));
        dup.tenant_id = sea_orm::Set(t2);
        dup.subject = sea_orm::Set("BoB".into());
        assert!(sea_orm::ActiveModelTrait::insert(dup, &db).await.is_err());
    }
}
