//! The transactional outbox: an event is written in the same transaction as
//! the change it describes, and a relay publishes it right after commit.
//! The outbox, not the stream, is the record of what must be delivered.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Event, Transport};
use crate::{Error, Result};

/// The `sync_outbox` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One event to publish, or published within the last hour.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sync_outbox")]
    pub struct Model {
        /// UUIDv7: publishing in id order keeps each entity's events in order.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The stream to publish on.
        pub stream: String,
        /// The whole event, JSON.
        #[sea_orm(column_type = "Text")]
        pub event: String,
        /// When it was enqueued (the event's `created_at`).
        pub created_at: DateTimeUtc,
        /// When the relay published it; unset while it waits.
        pub published_at: Option<DateTimeUtc>,
    }

    /// The table has no relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Writes `event` to the outbox; pass the transaction of the change.
pub async fn enqueue<C: ConnectionTrait>(db: &C, event: &Event) -> Result<()> {
    entity::Entity::insert(entity::ActiveModel {
        id: Set(event.id),
        stream: Set(event.stream.clone()),
        event: Set(serde_json::to_string(event).map_err(Error::internal)?),
        created_at: Set(event.created_at),
        published_at: Set(None),
    })
    .exec(db)
    .await?;
    Ok(())
}

/// Deletes published events whose content names `needle` (a purged
/// tenant's id): delivered already, they are kept only for inspection, and
/// a purge leaves none of the tenant's data behind. Events still to be
/// published stay. Returns how many went.
pub async fn forget_published<C: ConnectionTrait>(db: &C, needle: &str) -> Result<u64> {
    let r = entity::Entity::delete_many()
        .filter(entity::Column::PublishedAt.is_not_null())
        .filter(entity::Column::Event.contains(needle))
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

/// How many events wait to be published.
pub async fn backlog(db: &DatabaseConnection) -> Result<u64> {
    use sea_orm::PaginatorTrait;
    Ok(entity::Entity::find()
        .filter(entity::Column::PublishedAt.is_null())
        .count(db)
        .await?)
}

/// Published rows are kept this long (for inspection), then pruned.
const RETAIN_PUBLISHED: Duration = Duration::from_secs(3600);
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Deletes rows published more than `retain` ago; returns how many.
pub async fn prune(db: &DatabaseConnection, retain: Duration) -> Result<u64> {
    let before = Utc::now() - chrono::Duration::from_std(retain).map_err(Error::internal)?;
    let r = entity::Entity::delete_many()
        .filter(entity::Column::PublishedAt.lt(before))
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

/// Publishes the outbox. `nudge()` after a commit publishes at once; a slow
/// tick catches anything a nudge missed (another replica's rows, a crash
/// between commit and nudge, a transport outage).
#[derive(Clone)]
pub struct Relay {
    notify: Arc<Notify>,
}

impl Relay {
    /// Starts the relay task, until `shutdown`: it publishes on every nudge,
    /// at least every second (every 500 ms while publishing fails), and
    /// prunes rows published more than an hour ago.
    pub fn spawn(
        db: DatabaseConnection,
        transport: Arc<dyn Transport>,
        shutdown: CancellationToken,
    ) -> Self {
        let notify = Arc::new(Notify::new());
        let n = notify.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            let mut pruned_at = std::time::Instant::now();
            loop {
                if pruned_at.elapsed() >= PRUNE_EVERY {
                    pruned_at = std::time::Instant::now();
                    if let Err(e) = prune(&db, RETAIN_PUBLISHED).await {
                        tracing::warn!(error = %e, "outbox prune failed");
                    }
                }
                match drain(&db, transport.as_ref()).await {
                    Ok(_) => failures = 0,
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures.is_multiple_of(30) {
                            tracing::warn!(error = %e, failures, "outbox relay cannot publish; events stay in the outbox");
                        }
                    }
                }
                let wait = if failures > 0 {
                    Duration::from_millis(500)
                } else {
                    Duration::from_secs(1)
                };
                tokio::select! {
                    _ = n.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        });
        Self { notify }
    }

    /// Call after committing a transaction that enqueued events.
    pub fn nudge(&self) {
        self.notify.notify_one();
    }
}

/// Publishes every unpublished row in order; returns how many.
pub async fn drain(db: &DatabaseConnection, transport: &dyn Transport) -> Result<usize> {
    let mut total = 0;
    loop {
        let rows = entity::Entity::find()
            .filter(entity::Column::PublishedAt.is_null())
            .order_by_asc(entity::Column::Id)
            .limit(100)
            .all(db)
            .await?;
        if rows.is_empty() {
            return Ok(total);
        }
        let mut batch = Vec::with_capacity(rows.len());
        for row in &rows {
            let event: Event = serde_json::from_str(&row.event).map_err(Error::internal)?;
            batch.push((row.stream.clone(), event));
        }
        // A failed batch is published again whole: consumers are idempotent.
        transport.publish_many(&batch).await?;
        let published: Vec<_> = rows.iter().map(|r| r.id).collect();
        total += published.len();
        // Losing this mark in a crash only publishes the rows again, which
        // consumers ignore: no need to wait for the WAL flush.
        let txn = db.begin().await?;
        super::applied::relaxed_commit(&txn).await?;
        entity::Entity::update_many()
            .col_expr(entity::Column::PublishedAt, Expr::value(Utc::now()))
            .filter(entity::Column::Id.is_in(published))
            .exec(&txn)
            .await?;
        txn.commit().await?;
    }
}
