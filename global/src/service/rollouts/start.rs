//! Starting a rollout: keyed by an idempotency key, refused when its flag
//! is archived or lacks the variant, when another rollout of the flag runs
//! in the environment, or (unless allowed) when a stage's cohort matches no
//! tenant; PENDING when it starts later or a maintenance window freezes its
//! first stage, else RUNNING at its first stage (the canary).

use std::collections::BTreeMap;

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use shared::flags::{self as f, RolloutPlan, RolloutState, store};
use shared::ids::IdempotencyKey;
use shared::sync::outbox;
use shared::{Error, Result};
use uuid::Uuid;

use super::stages::frozen_detail;
use super::store::{get, plan_event, publish_all};
use super::validate::{check_stages, cohort_matches};
use super::{Health, NewRollout, Rollout, Stored, entry};
use crate::State;
use crate::entity::{rollout, tenant};
use crate::service::{idempotency, maintenance};

/// Starts a rollout in RUNNING at its first stage (the canary).
pub async fn start(st: &State, actor: &str, key: &IdempotencyKey, n: NewRollout) -> Result<Stored> {
    let req = check_stages(&n)?;
    let hash = idempotency::fingerprint(&("startRollout", &n));
    let id = Uuid::now_v7();
    let claim =
        idempotency::claim(&st.db, "startRollout", key, actor, &hash, &id.to_string()).await?;
    let id: Uuid = claim.resource_id.parse().map_err(Error::internal)?;
    if claim.done {
        return get(&st.db, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("rollout {id} not found")));
    }
    // An earlier attempt with this key committed but did not finish the claim.
    if let Some(s) = get(&st.db, id).await? {
        idempotency::complete(&st.db, "startRollout", key).await?;
        return Ok(s);
    }
    let result = create(st, actor, id, n, req).await;
    match &result {
        Ok(_) => idempotency::complete(&st.db, "startRollout", key).await?,
        Err(_) => idempotency::release(&st.db, "startRollout", key).await?,
    }
    let s = result?;
    publish_all(st, &s, &s.doc.history).await;
    Ok(s)
}

async fn create(
    st: &State,
    actor: &str,
    id: Uuid,
    n: NewRollout,
    req: Option<semver::VersionReq>,
) -> Result<Stored> {
    let txn = shared::db::begin_write(&st.db).await?;
    // Lock the flag row: two rollouts of one flag cannot start at once.
    let flag = store::flag::Entity::find_by_id(n.flag_key.clone())
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("flag `{}` does not exist", n.flag_key)))?;
    let def: f::FlagDef = serde_json::from_str(&flag.def).map_err(Error::internal)?;
    if def.archived {
        return Err(Error::Conflict(format!("flag `{}` is archived", def.key)));
    }
    if def.variant(&n.variant).is_none() {
        return Err(Error::bad_input(
            "input.variant",
            format!("flag `{}` has no variant `{}`", def.key, n.variant),
        ));
    }
    if let Some(other) = rollout::Entity::find()
        .filter(rollout::Column::FlagKey.eq(&n.flag_key))
        .filter(rollout::Column::Environment.eq(&n.environment))
        .filter(rollout::Column::State.is_in([
            RolloutState::Pending.as_str(),
            RolloutState::Running.as_str(),
            RolloutState::Paused.as_str(),
            RolloutState::Stuck.as_str(),
        ]))
        .one(&txn)
        .await?
    {
        return Err(Error::Conflict(format!(
            "rollout {} of `{}` in {} is still {}; one rollout per flag and environment at a time",
            other.id, n.flag_key, n.environment, other.state
        )));
    }
    if !n.allow_empty_cohort {
        // Tenants cells serve: the directory's plan column makes the plan
        // dimension exact without asking cells.
        let tenants = tenant::Entity::find()
            .filter(tenant::Column::CellId.ne(""))
            .filter(tenant::Column::Status.is_not_in([
                shared::model::TenantStatus::Failed.as_str(),
                shared::model::TenantStatus::Deleted.as_str(),
            ]))
            .all(&txn)
            .await?;
        for (i, s) in n.stages.iter().enumerate() {
            if !tenants
                .iter()
                .any(|t| cohort_matches(&s.cohort, t, def.salt(), req.as_ref()))
            {
                return Err(Error::bad_input(
                    format!("input.stages[{i}].cohort"),
                    format!(
                        "stage `{}` matches no tenant; set allowEmptyCohort to start anyway",
                        s.name
                    ),
                ));
            }
        }
    }
    let now = Utc::now();
    let first = n.stages[0].name.clone();
    let pending = n.start_at.filter(|at| *at > now);
    let frozen = match pending {
        Some(_) => None,
        None => maintenance::freezing(st, &n.stages[0].cohort).await?,
    };
    let (state, history) = match (pending, frozen) {
        (Some(at), _) => (
            RolloutState::Pending,
            vec![entry(
                "PENDING",
                format!("by {actor}; starts at {}", at.to_rfc3339()),
            )],
        ),
        // Due, but its first stage reaches a frozen tenant: it starts by
        // itself once the window is over.
        (None, Some(window)) => (
            RolloutState::Pending,
            vec![
                entry("PENDING", format!("by {actor}")),
                entry("FROZEN", frozen_detail(window)),
            ],
        ),
        (None, None) => (
            RolloutState::Running,
            vec![
                entry("STARTED", format!("by {actor}")),
                entry("STAGE_STARTED", format!("stage 0 `{first}`")),
            ],
        ),
    };
    let doc = Rollout {
        start_at: pending,
        plan: RolloutPlan {
            id,
            flag_key: n.flag_key,
            environment: n.environment,
            variant: n.variant,
            stages: n.stages,
            requires_tenant_version: n.requires_tenant_version,
            state,
            stage: 0,
        },
        ack_deadline_seconds: n.ack_deadline_seconds,
        stage_started_at: pending.unwrap_or(now),
        target_cells: st.cells.all().into_iter().map(|c| c.id).collect(),
        cells: BTreeMap::new(),
        health: Health::default(),
        stuck: None,
        history,
        created_by: actor.to_owned(),
        created_at: now,
    };
    rollout::Entity::insert(rollout::ActiveModel {
        id: Set(id),
        flag_key: Set(doc.plan.flag_key.clone()),
        environment: Set(doc.plan.environment.clone()),
        state: Set(doc.plan.state.as_str().to_owned()),
        doc: Set(serde_json::to_string(&doc).map_err(Error::internal)?),
        version: Set(1),
        plan_version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec(&txn)
    .await?;
    outbox::enqueue(&txn, &plan_event(&doc.plan, 1)?).await?;
    let s = Stored {
        doc,
        version: 1,
        plan_version: 1,
    };
    shared::audit::change(&txn, None, Some(id.to_string()), shared::audit::NONE, &s).await?;
    txn.commit().await?;
    st.relay.nudge();
    Ok(s)
}
