//! The provisioning saga: reserve → place → create in the cell → allocate
//! its resources → activate. Each step is idempotent and recorded; transient
//! failures are retried with exponential backoff and jitter until the
//! deadline; a permanent failure or the deadline compensates every step that
//! ran and leaves the tenant FAILED with a reason. A driver holds a lease it
//! renews before each attempt; the reconciler resumes sagas whose lease ran
//! out (their driver died).

use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use shared::ids::{IdempotencyKey, TenantId};
use shared::model::TenantStatus;
use shared::sync::outbox;
use shared::{Code, Error, Result};
use tokio::task::JoinHandle;

use crate::State;
use crate::entity::{saga_step, tenant};
use crate::events::{TenantEvent, TenantEventKind};
use crate::service::directory::{self, NewTenant};
use crate::service::saga::{self, Lease, LifecycleEvent};
use crate::service::{cells, idempotency, placement, tenant_status};

pub const RESERVE: &str = "reserve";
pub const PLACE: &str = "place";
pub const CREATE: &str = "create";
pub const ALLOCATE: &str = "allocate";
pub const ACTIVATE: &str = "activate";
pub const STEPS: [&str; 5] = [RESERVE, PLACE, CREATE, ALLOCATE, ACTIVATE];

const OP_CREATE: &str = "createTenant";

fn lease(st: &State) -> Lease {
    Lease {
        owner: st.replica.clone(),
        duration: st.provisioning.lease,
    }
}

/// Reserves the tenant and records its saga (leased to this replica);
/// false when it already existed.
pub async fn reserve(
    st: &State,
    id: TenantId,
    key: &IdempotencyKey,
    actor: &str,
    t: &NewTenant,
) -> Result<bool> {
    let made = saga::reserve(
        &st.db,
        id,
        key,
        actor,
        t,
        &STEPS,
        st.provisioning.deadline,
        st.provisioning.slug_reuse_after,
        &lease(st),
    )
    .await?;
    if made {
        publish_step(st, id, RESERVE, saga::STEP_DONE, 1, None).await;
    }
    Ok(made)
}

/// Drives the saga in the background unless this replica already does;
/// returns the task when this call started it.
pub fn start(st: &State, id: TenantId) -> Option<JoinHandle<()>> {
    if !st.driving.lock().expect("driving set").insert(id.0) {
        return None;
    }
    let st = st.clone();
    Some(tokio::spawn(async move {
        if let Err(e) = drive(&st, id).await {
            tracing::warn!(tenant_id = %id, error = %e, "provisioning saga paused; the reconciler resumes it");
        }
        st.driving.lock().expect("driving set").remove(&id.0);
    }))
}

/// Resumes every saga whose driver's lease ran out.
pub async fn resume_orphans(st: &State) -> Result<usize> {
    let ids = saga::orphaned(&st.db).await?;
    let n = ids.len();
    for id in ids {
        tracing::info!(tenant_id = %id, "resuming a provisioning saga whose lease ran out");
        start(st, id);
    }
    Ok(n)
}

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

async fn drive(st: &State, id: TenantId) -> Result<()> {
    let lease = lease(st);
    if !saga::acquire(&st.db, id, &lease).await? {
        return Ok(());
    }
    let s = saga::get(&st.db, id)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("saga of {id} vanished")))?;
    if s.status == saga::COMPENSATING {
        return compensate(st, id).await;
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
                set_step(st, id, &step.name, saga::STEP_FAILED, attempts, None).await?;
                return fail(st, id, &reason).await;
            }
            if !saga::acquire(&st.db, id, &lease).await? {
                return Ok(()); // another replica took over
            }
            attempts += 1;
            set_step(st, id, &step.name, saga::STEP_RUNNING, attempts, None).await?;
            match run(st, id, &input, &step.name).await {
                Ok(()) => {
                    set_step(st, id, &step.name, saga::STEP_DONE, attempts, None).await?;
                    crash_point(st, &step.name);
                    break;
                }
                Err(e) if transient(&e) => {
                    let msg = e.to_string();
                    tracing::info!(tenant_id = %id, step = %step.name, attempts, error = %msg, "provisioning step failed; retrying");
                    set_step(
                        st,
                        id,
                        &step.name,
                        saga::STEP_RUNNING,
                        attempts,
                        Some(msg.clone()),
                    )
                    .await?;
                    last_error = Some(msg);
                    let left = (s.deadline_at - Utc::now()).to_std().unwrap_or_default();
                    tokio::time::sleep(backoff(attempts, st.provisioning.lease).min(left)).await;
                }
                Err(e) => {
                    let msg = e.to_string();
                    set_step(
                        st,
                        id,
                        &step.name,
                        saga::STEP_FAILED,
                        attempts,
                        Some(msg.clone()),
                    )
                    .await?;
                    let reason = format!("step `{}` was refused: {msg}", step.name);
                    return fail(st, id, &reason).await;
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

async fn run(st: &State, id: TenantId, t: &NewTenant, step: &str) -> Result<()> {
    match step {
        PLACE => place(st, id, t).await,
        CREATE => {
            let cell = home(st, id).await?;
            st.cell_client.create_tenant(&cell, id, t).await.map(|_| ())
        }
        ALLOCATE => {
            let cell = home(st, id).await?;
            st.cell_client.allocate(&cell, id).await
        }
        ACTIVATE => activate(st, id).await,
        // Done when the saga was recorded.
        _ => Ok(()),
    }
}

/// Picks the cell once: a saga resumed after placing keeps its cell.
async fn place(st: &State, id: TenantId, t: &NewTenant) -> Result<()> {
    let row = directory::get(&st.db, id)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("directory row of {id} vanished")))?;
    if !row.cell_id.is_empty() {
        return Ok(());
    }
    let counts = cells::tenant_counts(&st.db).await?;
    let cell = placement::choose(
        &t.region,
        &t.plan,
        &crate::service::maintenance::placement_view(st).await?,
        &counts,
        &st.provisioning.placement_policy,
    )?;
    tenant::Entity::update_many()
        .col_expr(tenant::Column::CellId, Expr::value(cell.id.clone()))
        .col_expr(
            tenant::Column::Status,
            Expr::value(TenantStatus::Provisioning.as_str()),
        )
        .col_expr(tenant::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(tenant::Column::Id.eq(id.0))
        .filter(tenant::Column::CellId.eq(""))
        .exec(&st.db)
        .await?;
    Ok(())
}

async fn home(st: &State, id: TenantId) -> Result<crate::entity::cell::Model> {
    let row = directory::get(&st.db, id)
        .await?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("directory row of {id} vanished")))?;
    st.cells
        .get(&row.cell_id)
        .ok_or_else(|| Error::Unavailable(format!("cell {} is not registered", row.cell_id)))
}

/// ACTIVE, with its `global.directory` event in the same transaction (the
/// home cell records the version, so anti-entropy sees it in step).
async fn activate(st: &State, id: TenantId) -> Result<()> {
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
        .filter(tenant::Column::Id.eq(id.0))
        .filter(tenant::Column::Status.eq(TenantStatus::Provisioning.as_str()))
        .exec(&txn)
        .await?;
    if res.rows_affected == 1
        && let Some(row) = tenant::Entity::find_by_id(id.0).one(&txn).await?
    {
        outbox::enqueue(&txn, &tenant_status::event(&row)?).await?;
    }
    txn.commit().await?;
    st.relay.nudge();
    Ok(())
}

/// Marks the tenant FAILED with `reason` and undoes what ran.
async fn fail(st: &State, id: TenantId, reason: &str) -> Result<()> {
    tracing::warn!(tenant_id = %id, reason, "provisioning failed; compensating");
    tenant::Entity::update_many()
        .col_expr(
            tenant::Column::Status,
            Expr::value(TenantStatus::Failed.as_str()),
        )
        .col_expr(tenant::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(tenant::Column::Id.eq(id.0))
        .exec(&st.db)
        .await?;
    saga::set_status(&st.db, id, saga::COMPENSATING, Some(reason)).await?;
    compensate(st, id).await
}

/// Undoes, last first, every step that ran: the cell purges whatever it
/// may hold of the tenant (retried until it answers); the directory row
/// stays as the FAILED record, its slug free for a new tenant.
async fn compensate(st: &State, id: TenantId) -> Result<()> {
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
                let cell = home(st, id).await?;
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
            set_step(
                st,
                id,
                &step.name,
                saga::STEP_COMPENSATED,
                step.attempts,
                None,
            )
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
    if let Ok(Some(row)) = directory::get(&st.db, id).await {
        st.events.publish(TenantEvent { kind, tenant: row }).await;
    }
}

async fn set_step(
    st: &State,
    id: TenantId,
    name: &str,
    status: &str,
    attempts: i32,
    last_error: Option<String>,
) -> Result<saga_step::Model> {
    let row = saga::set_step(&st.db, id, name, status, attempts, last_error).await?;
    publish_step(st, id, name, status, attempts, row.last_error.clone()).await;
    Ok(row)
}

async fn publish_step(
    st: &State,
    id: TenantId,
    step: &str,
    status: &str,
    attempts: i32,
    last_error: Option<String>,
) {
    let tenant_status = directory::get(&st.db, id)
        .await
        .ok()
        .flatten()
        .map(|r| r.status)
        .unwrap_or_default();
    st.lifecycle
        .publish(LifecycleEvent {
            tenant_id: id.0,
            step: step.to_owned(),
            status: status.to_owned(),
            attempts,
            last_error,
            tenant_status,
            at: Utc::now(),
        })
        .await;
}
