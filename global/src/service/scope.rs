//! Checks of the scopes ops records and impact queries name: every cell,
//! region, plan, flag and tenant must exist, so a typo is an error rather
//! than an empty answer.

use std::collections::BTreeSet;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use shared::flags::store;
use shared::{Error, Result};
use uuid::Uuid;

use crate::State;
use crate::entity::tenant;

fn unknown(field: &str, what: &str, names: &[&str]) -> Error {
    Error::bad_input(field, format!("unknown {what}: {}", names.join(", ")))
}

/// Every id must name a registered cell.
pub fn cells(st: &State, field: &str, ids: &[String]) -> Result<()> {
    let missing: Vec<&str> = ids
        .iter()
        .filter(|id| st.cells.get(id).is_none())
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(unknown(field, "cell", &missing))
    }
}

/// Every region must hold at least one registered cell.
pub fn regions(st: &State, field: &str, regions: &[String]) -> Result<()> {
    let known: BTreeSet<String> = st.cells.all().into_iter().map(|c| c.region).collect();
    let missing: Vec<&str> = regions
        .iter()
        .filter(|r| !known.contains(*r))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(unknown(field, "region", &missing))
    }
}

/// Every plan must be one the control plane offers.
pub fn plans(st: &State, field: &str, plans: &[String]) -> Result<()> {
    let missing: Vec<&str> = plans
        .iter()
        .filter(|p| !st.plans.iter().any(|k| k.as_str() == p.as_str()))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(unknown(field, "plan", &missing))
    }
}

/// Every key must name a defined flag; returns the stored flags.
pub async fn flags(st: &State, field: &str, keys: &[String]) -> Result<Vec<store::Row>> {
    let mut out = Vec::with_capacity(keys.len());
    let mut missing = Vec::new();
    for k in keys {
        match store::get(&st.db, k).await? {
            Some(row) => out.push(row),
            None => missing.push(k.as_str()),
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(unknown(field, "flag", &missing))
    }
}

/// Every id must name a tenant of the directory.
pub async fn tenants(st: &State, field: &str, ids: &[Uuid]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let found: BTreeSet<Uuid> = tenant::Entity::find()
        .select_only()
        .column(tenant::Column::Id)
        .filter(tenant::Column::Id.is_in(ids.iter().copied()))
        .into_tuple::<Uuid>()
        .all(&st.db)
        .await?
        .into_iter()
        .collect();
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !found.contains(id))
        .map(Uuid::to_string)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        let names: Vec<&str> = missing.iter().map(String::as_str).collect();
        Err(unknown(field, "tenant", &names))
    }
}

/// Parses tenant ids given as text.
pub fn tenant_ids(field: &str, ids: &[String]) -> Result<Vec<Uuid>> {
    ids.iter()
        .map(|s| {
            Uuid::parse_str(s)
                .map_err(|_| Error::bad_input(field, format!("`{s}` is not a tenant id")))
        })
        .collect()
}
