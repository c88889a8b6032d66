//! The saga's driver: runs each step of a reserved tenant in order,
//! retrying transient failures with backoff until the deadline, and
//! compensates on a refusal or the deadline; publishes every step change.

use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use shared::ids::TenantId;
use shared::model::TenantStatus;
use shared::sync::outbox;
use shared::{Code, Error, Result};

use super::*;
use crate::State;
use crate::entity::{cell, saga_step, tenant};
use crate::events::{TenantEvent, TenantEventKind};
use crate::service::saga::{self, LifecycleEvent};
use crate::service::{directory, tenant_status};

fn transient(e: &Error) -> bool {
    matches!(e.code(), Code::Unavailable | Code::Internal)
}

/// Exponential backoff with full jitter: 200 ms doubling, capped at a third
/// of the lease (the driver renews it between attempts) and at 5 s.
fn backoff(attempt: i32, lease: Duration) -> Duration {
    let cap = lease.div_f64(3.0).min(Duration::from_secs(5));
    let exp =
        Duration::from_millis(200).saturating_mul(1u32 << attempt.clamp(1, 16).saturating_sub(1));
    let ceiling = exp.min(cap).max(Duration::from_millis(20));
    let ms = ceiling.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

/// The tenant's directory row as it is now (None when it vanished).
async fn load(st: &State, id: TenantId) -> Result<Option<tenant::Model>> {
    directory::get(&st.db, id).await
}

/// A saga being driven. The directory row is read once, when the driver
/// starts or resumes (everything a step needs is persisted there and in
/// the saga's rows), and kept as the steps change it: the place step
/// records the cell the later steps call, activation and failure the
/// status each step change is published with.
struct Run<'a> {
    st: &'a State,
    id: TenantId,
    row: Option<tenant::Model>,
}

pub(super) async fn drive(st: &State, id: TenantId) -> Result<()> {
    let lease = lease(st);
    if !saga::acquire(&st.db, id, &lease).await? {
        return Ok(());
    }
    let s = saga::get(&st.db, id)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("saga of {id} vanished")))?;
    let mut run = Run {
        st,
        id,
        row: load(st, id).await?,
    };
    if s.status == saga::COMPENSATING {
        return run.compensate().await;
    }
    let input: NewTenant = serde_json::from_str(&s.input).map_err(Error::internal)?;
    for step in saga::steps(&st.db, id).await? {
        if step.status == saga::STEP_DONE {
            continue;
        }
        let mut attempts = step.attempts;
        let mut last_error = step.last_error.clone();
        loop {
            if Utc::now() >= s.deadline_at {
                let reason = format!(
                    "provisioning did not finish by its deadline {}: step `{}` failed {} time(s), last with: {}",
                    s.deadline_at.to_rfc3339(),
                    step.name,
                    attempts,
                    last_error.as_deref().unwrap_or("no error recorded")
                );
                run.set_step(&step.name, saga::STEP_FAILED, attempts, None)
                    .await?;
                return run.fail(&reason).await;
            }
            if !saga::acquire(&st.db, id, &lease).await? {
                return Ok(()); // another replica took over
            }
            attempts += 1;
            run.set_step(&step.name, saga::STEP_RUNNING, attempts, None)
                .await?;
            match run.step(&input, &step.name).await {
                Ok(()) => {
                    run.set_step(&step.name, saga::STEP_DONE, attempts, None)
                        .await?;
                    crash_point(st, &step.name);
                    break;
                }
                Err(e) if transient(&e) => {
                    let msg = e.to_string();
                    tracing::info!(tenant_id = %id, step = %step.name, attempts, error = %msg, "provisioning step failed; retrying");
                    run.set_step(&step.name, saga::STEP_RUNNING, attempts, Some(msg.clone()))
                        .await?;
                    last_error = Some(msg);
                    let left = (s.deadline_at - Utc::now()).to_std().unwrap_or_default();
                    tokio::time::sleep(backoff(attempts, st.provisioning.lease).min(left)).await;
                }
                Err(e) => {
                    let msg = e.to_string();
                    run.set_step(&step.name, saga::STEP_FAILED, attempts, Some(msg.clone()))
                        .await?;
                    let reason = format!("step `{}` was refused: {msg}", step.name);
                    return run.fail(&reason).await;
                }
            }
        }
    }
    saga::set_status(&st.db, id, saga::DONE, None).await?;
    finish(st, id, &s, TenantEventKind::Created).await;
    Ok(())
}

/// Test only: exit between steps, as a crash would.
fn crash_point(st: &State, step: &str) {
    if st.provisioning.crash_after_step.as_deref() == Some(step) {
        tracing::error!(step, "test crash point reached: exiting");
        std::process::exit(86);
    }
}

impl Run<'_> {
    async fn step(&mut self, t: &NewTenant, step: &str) -> Result<()> {
        match step {
            PLACE => self.place(t).await,
            CREATE => {
                let cell = self.home()?;
                self.st
                    .cell_client
                    .create_tenant(&cell, self.id, t)
                    .await
                    .map(|_| ())
            }
            ALLOCATE => {
                let cell = self.home()?;
                self.st.cell_client.allocate(&cell, self.id).await
            }
            ACTIVATE => self.activate().await,
            // Done when the saga was recorded.
            _ => Ok(()),
        }
    }

    fn row(&self) -> Result<&tenant::Model> {
        self.row.as_ref().ok_or_else(|| vanished(self.id))
    }

    /// The status step changes are published with ("" when the row vanished).
    fn status(&self) -> &str {
        self.row.as_ref().map(|r| r.status.as_str()).unwrap_or("")
    }

    /// Picks the cell once: a saga resumed after placing keeps its cell.
    async fn place(&mut self, t: &NewTenant) -> Result<()> {
        if !self.row()?.cell_id.is_empty() {
            return Ok(());
        }
        let cell = placement::place(self.st, &t.region, &t.plan).await?;
        let now = Utc::now();
        let placed = tenant::Entity::update_many()
            .col_expr(tenant::Column::CellId, Expr::value(cell.id.clone()))
            .col_expr(
                tenant::Column::Status,
                Expr::value(TenantStatus::Provisioning.as_str()),
            )
            .col_expr(tenant::Column::UpdatedAt, Expr::value(now))
            .filter(tenant::Column::Id.eq(self.id.0))
            .filter(tenant::Column::CellId.eq(""))
            .exec(&self.st.db)
            .await?;
        match self.row.as_mut() {
            Some(row) if placed.rows_affected == 1 => {
                row.cell_id = cell.id;
                row.status = TenantStatus::Provisioning.as_str().to_owned();
                row.updated_at = now;
            }
            // Placed meanwhile (or gone): what the directory holds counts.
            _ => self.row = load(self.st, self.id).await?,
        }
        Ok(())
    }

    /// The tenant's home cell, as the place step recorded it.
    fn home(&self) -> Result<cell::Model> {
        let row = self.row()?;
        self.st
            .cells
            .get(&row.cell_id)
            .ok_or_else(|| Error::Unavailable(format!("cell {} is not registered", row.cell_id)))
    }

    /// ACTIVE, with its `global.directory` event in the same transaction (the
    /// home cell records the version, so anti-entropy sees it in step).
    async fn activate(&mut self) -> Result<()> {
        let st = self.st;
        let txn = st.db.begin().await?;
        let res = tenant::Entity::update_many()
            .col_expr(
                tenant::Column::Status,
                Expr::value(TenantStatus::Active.as_str()),
            )
            .col_expr(
                tenant::Column::Version,
                Expr::col(tenant::Column::Version).add(1),
            )
            .col_expr(tenant::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(tenant::Column::Id.eq(self.id.0))
            .filter(tenant::Column::Status.eq(TenantStatus::Provisioning.as_str()))
            .exec(&txn)
            .await?;
        let mut active = None;
        if res.rows_affected == 1
            && let Some(row) = tenant::Entity::find_by_id(self.id.0).one(&txn).await?
        {
            outbox::enqueue(&txn, &tenant_status::event(&row)?).await?;
            active = Some(row);
        }
        txn.commit().await?;
        st.relay.nudge();
        if active.is_some() {
            self.row = active;
        }
        Ok(())
    }

    /// Marks the tenant FAILED with `reason` and undoes what ran.
    async fn fail(&mut self, reason: &str) -> Result<()> {
        let (st, id) = (self.st, self.id);
        tracing::warn!(tenant_id = %id, reason, "provisioning failed; compensating");
        let now = Utc::now();
        tenant::Entity::update_many()
            .col_expr(
                tenant::Column::Status,
                Expr::value(TenantStatus::Failed.as_str()),
            )
            .col_expr(tenant::Column::UpdatedAt, Expr::value(now))
            .filter(tenant::Column::Id.eq(id.0))
            .exec(&st.db)
            .await?;
        if let Some(row) = self.row.as_mut() {
            row.status = TenantStatus::Failed.as_str().to_owned();
            row.updated_at = now;
        }
        saga::set_status(&st.db, id, saga::COMPENSATING, Some(reason)).await?;
        self.compensate().await
    }

    /// Undoes, last first, every step that ran: the cell purges whatever it
    /// may hold of the tenant (retried until it answers); the directory row
    /// stays as the FAILED record, its slug free for a new tenant.
    async fn compensate(&self) -> Result<()> {
        let (st, id) = (self.st, self.id);
        let lease = lease(st);
        let steps = saga::steps(&st.db, id).await?;
        let touched_cell = steps.iter().any(|s| {
            (s.name == CREATE || s.name == ALLOCATE)
                && s.attempts > 0
                && s.status != saga::STEP_COMPENSATED
        });
        if touched_cell {
            let mut attempt = 0;
            loop {
                if !saga::acquire(&st.db, id, &lease).await? {
                    return Ok(());
                }
                attempt += 1;
                let purged = async {
                    let cell = self.home()?;
                    st.cell_client.purge(&cell, id).await
                }
                .await;
                match purged {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::info!(tenant_id = %id, attempt, error = %e, "compensation could not reach the cell; retrying");
                        tokio::time::sleep(backoff(attempt, st.provisioning.lease)).await;
                    }
                }
            }
        }
        for step in steps.iter().rev() {
            let ran = step.attempts > 0 && step.status != saga::STEP_COMPENSATED;
            if ran {
                self.set_step(&step.name, saga::STEP_COMPENSATED, step.attempts, None)
                    .await?;
            }
        }
        crate::service::members::delete_all(&st.db, id.0).await?;
        saga::set_status(&st.db, id, saga::FAILED, None).await?;
        if let Some(s) = saga::get(&st.db, id).await? {
            finish(st, id, &s, TenantEventKind::Updated).await;
        }
        Ok(())
    }

    async fn set_step(
        &self,
        name: &str,
        status: &str,
        attempts: i32,
        last_error: Option<String>,
    ) -> Result<saga_step::Model> {
        let row = saga::set_step(&self.st.db, self.id, name, status, attempts, last_error).await?;
        publish_step(
            self.st,
            self.id,
            name,
            status,
            attempts,
            row.last_error.clone(),
            self.status(),
        )
        .await;
        Ok(row)
    }
}

/// The saga ended: the key now answers with the tenant as it is, and
/// `tenantEvents` hears of it (CREATED once ACTIVE, UPDATED once FAILED).
/// The time from the reservation to here is the provisioning latency SLI
/// (`tcp_provisioning_duration_seconds{outcome}`).
async fn finish(st: &State, id: TenantId, s: &crate::entity::saga::Model, kind: TenantEventKind) {
    let outcome = match kind {
        TenantEventKind::Created => "active",
        _ => "failed",
    };
    let took = Ord::max(
        (Utc::now() - s.created_at).num_microseconds().unwrap_or(0),
        0,
    );
    st.provisioning_duration
        .with_label_values(&[outcome])
        .observe(took as f64 / 1e6);
    if let Ok(key) = IdempotencyKey::parse(&s.idempotency_key)
        && let Err(e) = idempotency::complete(&st.db, OP_CREATE, &key).await
    {
        tracing::warn!(tenant_id = %id, error = %e, "could not complete the idempotency key");
    }
    // Read again: the event carries the tenant as the directory has it now.
    if let Ok(Some(row)) = load(st, id).await {
        st.events.publish(TenantEvent { kind, tenant: row }).await;
    }
}

pub(super) async fn publish_step(
    st: &State,
    id: TenantId,
    step: &str,
    status: &str,
    attempts: i32,
    last_error: Option<String>,
    tenant_status: &str,
) {
    st.lifecycle
        .publish(LifecycleEvent {
            tenant_id: id.0,
            step: step.to_owned(),
            status: status.to_owned(),
            attempts,
            last_error,
            tenant_status: tenant_status.to_owned(),
            at: Utc::now(),
        })
        .await;
}
