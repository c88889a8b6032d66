//! "Which tenants are impacted?": directory facts (cell, region, plan,
//! version, the scopes of incidents and maintenance windows) are answered
//! here in one query; facts cells own (the variant a flag serves, an
//! effective config value) are asked of every cell concerned, in parallel,
//! each within the impact timeout. A cell that does not answer makes the
//! answer incomplete: its tenants are listed from the directory with the
//! reason "cell unreachable". Scopes combine with AND; the result is
//! ordered by tenant id, so cursors are stable.

use std::collections::{BTreeMap, HashMap, HashSet};

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::Serialize;
use shared::configkeys::store as config_keys;
use shared::impact::{DEFAULT_ENVIRONMENT, Question, parse_value};
use shared::{Error, Result};
use uuid::Uuid;

use super::directory_cache::Entry;
use super::{incidents, maintenance, scope};
use crate::State;
use crate::entity::tenant;

/// The reason given for tenants whose cell did not answer.
pub const UNREACHABLE: &str = "cell unreachable";
/// The largest page.
pub const MAX_PAGE: usize = 1000;

/// What to select; every field given must hold (AND).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Query {
    pub cell_ids: Vec<String>,
    pub regions: Vec<String>,
    pub plans: Vec<String>,
    pub flag_key: Option<String>,
    pub flag_variant: Option<String>,
    pub environment: Option<String>,
    pub config_key: Option<String>,
    pub config_value: Option<String>,
    pub incident_id: Option<Uuid>,
    pub maintenance_window_id: Option<Uuid>,
    pub tenant_version: Option<i64>,
}

impl Query {
    fn is_empty(&self) -> bool {
        self.cell_ids.is_empty()
            && self.regions.is_empty()
            && self.plans.is_empty()
            && self.flag_key.is_none()
            && self.config_key.is_none()
            && self.incident_id.is_none()
            && self.maintenance_window_id.is_none()
            && self.tenant_version.is_none()
    }
}

/// One impacted tenant of the page.
#[derive(Debug, Clone)]
pub struct Impacted {
    pub tenant: tenant::Model,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Impact {
    pub page: Vec<Impacted>,
    pub has_next_page: bool,
    pub total_count: i64,
    pub by_cell: BTreeMap<String, i64>,
    pub by_region: BTreeMap<String, i64>,
    pub unreachable_cells: Vec<String>,
    pub complete: bool,
}

/// A directory row as the selection needs it.
struct Candidate<'a> {
    id: Uuid,
    entry: &'a Entry,
    /// Whether the incident's directory part holds (cells, regions, tenants).
    incident_direct: bool,
}

/// The questions cells must answer, and what each stands for.
#[derive(Default)]
struct Asked {
    questions: Vec<Question>,
    /// Index of the scope's flag question.
    flag: Option<usize>,
    /// Index of the scope's config question.
    config: Option<usize>,
    /// Indexes of the incident's flag questions.
    incident_flags: Vec<usize>,
}

/// Checks the scope names only things that exist.
async fn check(st: &State, q: &Query) -> Result<()> {
    if q.flag_variant.is_some() && q.flag_key.is_none() {
        return Err(Error::bad_input(
            "scope.flagVariant",
            "flagVariant needs flagKey",
        ));
    }
    if q.is_empty() {
        return Err(Error::bad_input(
            "scope",
            "name at least one of cellIds, regions, plans, flagKey, configKey, incidentId, \
             maintenanceWindowId or tenantVersion",
        ));
    }
    scope::cells(st, "scope.cellIds", &q.cell_ids)?;
    scope::regions(st, "scope.regions", &q.regions)?;
    scope::plans(st, "scope.plans", &q.plans)?;
    if let Some(key) = &q.flag_key {
        let flag = scope::flags(st, "scope.flagKey", std::slice::from_ref(key))
            .await?
            .remove(0);
        if let Some(v) = &q.flag_variant
            && flag.flag.def.variant(v).is_none()
        {
            let names: Vec<&str> = flag
                .flag
                .def
                .variants
                .iter()
                .map(|v| v.name.as_str())
                .collect();
            return Err(Error::bad_input(
                "scope.flagVariant",
                format!(
                    "flag `{key}` has no variant `{v}`; its variants: {}",
                    names.join(", ")
                ),
            ));
        }
    }
    match (&q.config_key, &q.config_value) {
        (Some(key), Some(_)) => {
            if config_keys::get(&st.db, key).await?.is_none() {
                return Err(Error::bad_input(
                    "scope.configKey",
                    format!("unknown config key `{key}`"),
                ));
            }
        }
        (None, None) => {}
        _ => {
            return Err(Error::bad_input(
                "scope.configValue",
                "configKey and configValue go together",
            ));
        }
    }
    if q.tenant_version.is_some_and(|v| v < 0) {
        return Err(Error::bad_input(
            "scope.tenantVersion",
            "a tenant version is not negative",
        ));
    }
    Ok(())
}

fn unknown_record(field: &str, what: &str, e: Error) -> Error {
    match e {
        Error::NotFound(m) => Error::bad_input(field, format!("unknown {what}: {m}")),
        e => e,
    }
}

/// Answers an impact query: the page after `after` (a tenant id) of at
/// most `first` tenants, with counts over the whole selection.
pub async fn impacted(st: &State, q: &Query, first: usize, after: Option<Uuid>) -> Result<Impact> {
    check(st, q).await?;
    let incident = match q.incident_id {
        Some(id) => Some(incidents::scope_of(
            &incidents::get(st, id)
                .await
                .map_err(|e| unknown_record("scope.incidentId", "incident", e))?,
        )?),
        None => None,
    };
    let window = match q.maintenance_window_id {
        Some(id) => Some(maintenance::scope_of(
            &maintenance::get(st, id).await.map_err(|e| {
                unknown_record("scope.maintenanceWindowId", "maintenance window", e)
            })?,
        )?),
        None => None,
    };

    let incident_direct = incident.as_ref().map(|i| maintenance::Scope {
        cell_ids: i.cell_ids.clone(),
        regions: i.regions.clone(),
        tenant_ids: i.tenant_ids.clone(),
    });
    let incident_has_direct = incident_direct.as_ref().is_some_and(|s| {
        !s.cell_ids.is_empty() || !s.regions.is_empty() || !s.tenant_ids.is_empty()
    });
    let incident_flags: Vec<String> = incident
        .as_ref()
        .map(|i| i.flag_keys.clone())
        .unwrap_or_default();
    if incident.is_some() && incident_flags.is_empty() && !incident_has_direct {
        // Components only: no tenant maps to it.
        return Ok(Impact {
            complete: true,
            ..Impact::default()
        });
    }
    // Cell facts are asked of every cell that may hold a candidate while
    // the directory cache catches up (the two do not wait for each other).
    let mut asked = Asked::default();
    if let Some(key) = &q.flag_key {
        asked.flag = Some(asked.questions.len());
        asked.questions.push(Question {
            flag_key: Some(key.clone()),
            flag_variant: q.flag_variant.clone(),
            environment: q.environment.clone(),
            config_key: None,
            config_value: None,
        });
    }
    if let (Some(key), Some(value)) = (&q.config_key, &q.config_value) {
        asked.config = Some(asked.questions.len());
        asked.questions.push(Question {
            flag_key: None,
            flag_variant: None,
            environment: None,
            config_key: Some(key.clone()),
            config_value: Some(value.clone()),
        });
    }
    for key in &incident_flags {
        asked.incident_flags.push(asked.questions.len());
        asked.questions.push(Question {
            flag_key: Some(key.clone()),
            flag_variant: None,
            environment: None,
            config_key: None,
            config_value: None,
        });
    }
    let may_hold: Vec<String> = st
        .cells
        .all()
        .into_iter()
        .filter(|c| q.cell_ids.is_empty() || q.cell_ids.contains(&c.id))
        .filter(|c| q.regions.is_empty() || q.regions.contains(&c.region))
        .map(|c| c.id)
        .collect();
    let (directory, answers) =
        tokio::join!(st.directory.read(&st.db), ask_cells(st, may_hold, &asked));
    let directory = directory?;

    // Directory facts, from the cache.
    let in_directory_scope = |id: &Uuid, e: &Entry| -> bool {
        (q.cell_ids.is_empty() || q.cell_ids.iter().any(|c| *c == *e.cell))
            && (q.regions.is_empty() || q.regions.iter().any(|r| *r == *e.region))
            && (q.plans.is_empty() || q.plans.iter().any(|p| *p == *e.plan))
            && q.tenant_version.is_none_or(|v| v == e.version)
            && window
                .as_ref()
                .is_none_or(|w| w.covers_cell(&e.cell, &e.region) || w.tenant_ids.contains(id))
    };
    let covered_by_incident = |id: &Uuid, e: &Entry| {
        incident_direct
            .as_ref()
            .is_some_and(|s| s.covers_cell(&e.cell, &e.region) || s.tenant_ids.contains(id))
    };
    let candidates: Vec<Candidate> = directory
        .tenants
        .iter()
        .filter(|(id, e)| in_directory_scope(id, e))
        .map(|(id, e)| Candidate {
            id: *id,
            entry: e,
            incident_direct: covered_by_incident(id, e),
        })
        // Without flags to ask about, the incident is a directory fact.
        .filter(|c| incident.is_none() || !incident_flags.is_empty() || c.incident_direct)
        .collect();

    let holding: HashSet<&str> = candidates.iter().map(|c| &*c.entry.cell).collect();
    // A cell that did not answer matters when it holds a candidate.
    let mut unreachable_cells: Vec<String> = if asked.questions.is_empty() {
        Vec::new()
    } else {
        holding
            .iter()
            .filter(|c| answers.get(**c).is_none_or(Option::is_none))
            .map(|c| (*c).to_owned())
            .collect()
    };
    unreachable_cells.sort();

    let matches = |c: &Candidate| -> Option<bool> {
        if asked.questions.is_empty() {
            return Some(true);
        }
        let sets = answers.get(&*c.entry.cell)?.as_ref()?;
        let has = |i: usize| sets[i].binary_search(&c.id).is_ok();
        let flag = asked.flag.is_none_or(has);
        let config = asked.config.is_none_or(has);
        let incident =
            incident.is_none() || c.incident_direct || asked.incident_flags.iter().any(|&i| has(i));
        Some(flag && config && incident)
    };
    let mut selected: Vec<(&Candidate, bool)> = Vec::new();
    for c in &candidates {
        match matches(c) {
            Some(true) => selected.push((c, false)),
            Some(false) => {}
            // The cell did not answer: listed, flagged unreachable.
            None => selected.push((c, true)),
        }
    }

    let mut out = Impact {
        total_count: selected.len() as i64,
        complete: unreachable_cells.is_empty(),
        unreachable_cells,
        ..Impact::default()
    };
    let mut by_cell: HashMap<&str, i64> = HashMap::new();
    let mut by_region: HashMap<&str, i64> = HashMap::new();
    for (c, _) in &selected {
        *by_cell.entry(&c.entry.cell).or_default() += 1;
        *by_region.entry(&c.entry.region).or_default() += 1;
    }
    out.by_cell = by_cell
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    out.by_region = by_region
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let start = match after {
        Some(a) => selected.partition_point(|(c, _)| c.id <= a),
        None => 0,
    };
    let page: Vec<&(&Candidate, bool)> = selected.iter().skip(start).take(first).collect();
    out.has_next_page = start + page.len() < selected.len();
    let page: Vec<(Uuid, bool)> = page.iter().map(|(c, u)| (c.id, *u)).collect();
    drop(selected);
    drop(candidates);
    drop(directory);
    let ids: Vec<Uuid> = page.iter().map(|(id, _)| *id).collect();
    let mut models: HashMap<Uuid, tenant::Model> = tenant::Entity::find()
        .filter(tenant::Column::Id.is_in(ids.iter().copied()))
        .all(&st.db)
        .await?
        .into_iter()
        .map(|m| (m.id, m))
        .collect();
    for (id, unreachable) in page {
        let Some(t) = models.remove(&id) else {
            // Deleted between the two reads: not impacted any more.
            continue;
        };
        let reasons = reasons(q, &t, unreachable);
        out.page.push(Impacted { tenant: t, reasons });
    }
    Ok(out)
}

/// Why `t` is in the answer.
fn reasons(q: &Query, t: &tenant::Model, unreachable: bool) -> Vec<String> {
    let mut r = Vec::new();
    if !q.cell_ids.is_empty() {
        r.push(format!("in cell {}", t.cell_id));
    }
    if !q.regions.is_empty() {
        r.push(format!("in region {}", t.region));
    }
    if !q.plans.is_empty() {
        r.push(format!("on plan {}", t.plan));
    }
    if let Some(v) = q.tenant_version {
        r.push(format!("at tenant version {v}"));
    }
    if let Some(id) = q.maintenance_window_id {
        r.push(format!("in maintenance window {id}"));
    }
    if unreachable {
        r.push(UNREACHABLE.to_owned());
        return r;
    }
    if let Some(id) = q.incident_id {
        r.push(format!("in incident {id}"));
    }
    if let Some(key) = &q.flag_key {
        let env = q.environment.as_deref().unwrap_or(DEFAULT_ENVIRONMENT);
        r.push(match &q.flag_variant {
            Some(v) => format!("flag {key} serves {v} in {env}"),
            None => format!("flag {key} is on in {env}"),
        });
    }
    if let (Some(key), Some(value)) = (&q.config_key, &q.config_value) {
        r.push(format!("config {key} = {}", parse_value(value)));
    }
    r
}

/// Each cell holding a candidate, with its answer (`None`: it did not
/// answer in time). No questions, no calls.
async fn ask_cells(
    st: &State,
    cells: Vec<String>,
    asked: &Asked,
) -> HashMap<String, Option<Vec<Vec<Uuid>>>> {
    if asked.questions.is_empty() {
        return HashMap::new();
    }
    let calls = cells.into_iter().map(|id| async move {
        let Some(cell) = st.cells.get(&id) else {
            return (id, None);
        };
        let call = st.cell_client.impact_matches(&cell, &asked.questions);
        let answer = match tokio::time::timeout(st.ops.impact_timeout, call).await {
            Ok(Ok(sets)) if sets.len() == asked.questions.len() => Some(sets),
            Ok(Ok(_)) => {
                tracing::warn!(cell = %id, "cell answered a different number of impact questions");
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(cell = %id, error = %e, "cell did not answer an impact query");
                None
            }
            Err(_) => {
                tracing::warn!(cell = %id, "cell did not answer an impact query in time");
                None
            }
        };
        (id, answer)
    });
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .collect()
}
