//! createTenant and its provisioning saga: reserve → place → create in the
//! cell → allocate its resources → activate. Each step is idempotent and
//! recorded; transient failures are retried with exponential backoff and
//! jitter until the deadline; a permanent failure or the deadline
//! compensates every step that ran and leaves the tenant FAILED with a
//! reason. A driver holds a lease it renews before each attempt; the
//! reconciler resumes sagas whose lease ran out (their driver died), from
//! what the saga's rows and the directory row hold.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::ids::{IdempotencyKey, Plan, Region, Slug, TenantId};
use shared::model::TenantStatus;
use shared::{Error, Result};
use tokio::task::JoinHandle;

use crate::State;
use crate::entity::tenant;
use crate::service::saga::{self, Lease};
use crate::service::{directory, idempotency, placement};

mod driver;

use driver::{drive, publish_step};

pub const RESERVE: &str = "reserve";
pub const PLACE: &str = "place";
pub const CREATE: &str = "create";
pub const ALLOCATE: &str = "allocate";
pub const ACTIVATE: &str = "activate";
pub const STEPS: [&str; 5] = [RESERVE, PLACE, CREATE, ALLOCATE, ACTIVATE];

/// The idempotency operation of createTenant: a key fixes the tenant id.
const OP_CREATE: &str = "createTenant";

/// What createTenant asks for; the saga's input, stored with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewTenant {
    pub slug: Slug,
    pub name: String,
    pub region: Region,
    pub plan: Plan,
    /// The subject who becomes the tenant's first owner.
    #[serde(default)]
    pub owner: String,
}

/// Creates a tenant through its provisioning saga and waits for the saga
/// to end, at most the configured wait: the answer is the ACTIVE tenant, or
/// the FAILED one (its `provisioning.reason` says why); a saga still
/// retrying after the wait answers UNAVAILABLE and goes on in the
/// background. Safe to retry with the same idempotency key: concurrent and
/// later retries get the same tenant.
pub async fn create(
    st: &State,
    actor: &str,
    key: &IdempotencyKey,
    t: NewTenant,
) -> Result<tenant::Model> {
    if !st.plans.iter().any(|p| p == &t.plan) {
        let valid: Vec<&str> = st.plans.iter().map(|p| p.as_str()).collect();
        return Err(Error::bad_input(
            "input.plan",
            format!(
                "unknown plan `{}`; valid plans: {}",
                t.plan,
                valid.join(", ")
            ),
        ));
    }
    // Refused at once, with nothing made, when placement cannot succeed now
    // (unknown region, no UP cell, no room); a retry with the same key that
    // finds the saga already reserved skips this. The place step asks again.
    if reserved_by(st, key).await?.is_none() {
        placement::place(st, &t.region, &t.plan).await?;
    }
    let hash = idempotency::fingerprint(&t);
    let proposed = TenantId::new();
    let claim =
        idempotency::claim(&st.db, OP_CREATE, key, actor, &hash, &proposed.to_string()).await?;
    let id: TenantId = claim
        .resource_id
        .parse()
        .map_err(|e: shared::ids::Invalid| Error::internal(anyhow::anyhow!(e.0)))?;
    if claim.done
        && let Some(row) = directory::get(&st.db, id).await?
    {
        return Ok(row);
    }
    if let Err(e) = reserve(st, id, key, actor, &t).await {
        // Nothing was made: free the key so a corrected retry may use it.
        idempotency::release(&st.db, OP_CREATE, key).await?;
        return Err(e);
    }
    let driver = start(st, id);
    wait(st, id, driver).await
}

/// The tenant an earlier createTenant with `key` reserved, if any.
async fn reserved_by(st: &State, key: &IdempotencyKey) -> Result<Option<TenantId>> {
    idempotency::resource(&st.db, OP_CREATE, key)
        .await
        .map(|r| r.and_then(|id| id.parse().ok()))
}

/// Waits for the saga of `id` to end (at most the configured wait).
async fn wait(st: &State, id: TenantId, driver: Option<JoinHandle<()>>) -> Result<tenant::Model> {
    let until = tokio::time::Instant::now() + st.provisioning.wait;
    if let Some(task) = driver {
        let _ = tokio::time::timeout_at(until, task).await;
    }
    loop {
        let s = saga::get(&st.db, id).await?;
        let ended = s
            .as_ref()
            .is_none_or(|s| s.status == saga::DONE || s.status == saga::FAILED);
        if ended {
            return directory::get(&st.db, id)
                .await?
                .ok_or_else(|| vanished(id));
        }
        if tokio::time::Instant::now() >= until {
            if let Some(s) = s.as_ref().filter(|s| s.status == saga::COMPENSATING) {
                return Err(Error::Unavailable(format!(
                    "tenant {id} failed ({}) and what was made is being undone; \
                     its status is FAILED",
                    s.reason.as_deref().unwrap_or("no reason recorded")
                )));
            }
            let steps = saga::steps(&st.db, id).await?;
            let at = steps
                .iter()
                .find(|s| s.status != saga::STEP_DONE)
                .map(|s| match &s.last_error {
                    Some(e) => format!("step `{}` (attempt {}): {e}", s.name, s.attempts),
                    None => format!("step `{}`", s.name),
                })
                .unwrap_or_default();
            return Err(Error::Unavailable(format!(
                "tenant {id} is still provisioning at {at}; it keeps retrying until its deadline: \
                 retry with the same idempotency key, or watch tenantLifecycle"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn vanished(id: TenantId) -> Error {
    Error::internal(anyhow::anyhow!("directory row of {id} vanished"))
}

fn lease(st: &State) -> Lease {
    Lease {
        owner: st.replica.clone(),
        duration: st.provisioning.lease,
    }
}

/// Reserves the tenant and records its saga (leased to this replica);
/// false when it already existed.
async fn reserve(
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
        // The reservation is the PENDING directory row.
        publish_step(
            st,
            id,
            RESERVE,
            saga::STEP_DONE,
            1,
            None,
            TenantStatus::Pending.as_str(),
        )
        .await;
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
