//! What a new rollout must satisfy before anything is written, and which
//! tenants a stage's cohort reaches.

use shared::flags::Cohort;
use shared::flags::bucket::{bucket, threshold};
use shared::flags::def::{check_environment, check_percentage};
use shared::{Error, Result};

use super::NewRollout;
use crate::entity::tenant;

/// Whether `t` is in cohort `c` of a flag salted `salt`, given the rollout's
/// tenant version requirement.
pub fn cohort_matches(
    c: &Cohort,
    t: &tenant::Model,
    salt: &str,
    req: Option<&semver::VersionReq>,
) -> bool {
    (c.tenant_ids.is_empty() || c.tenant_ids.contains(&t.id))
        && (c.cell_ids.is_empty() || c.cell_ids.contains(&t.cell_id))
        && (c.regions.is_empty() || c.regions.contains(&t.region))
        && (c.plans.is_empty() || c.plans.contains(&t.plan))
        && c.percentage
            .is_none_or(|p| bucket(salt, t.id) < threshold(p))
        && req.is_none_or(|r| r.matches(&semver::Version::new(t.version.max(0) as u64, 0, 0)))
}

/// Checks the environment, the stages (1 to 20, named, soaks not negative,
/// percentages valid and never going down, gates in range) and the
/// acknowledgement deadline; answers the parsed `requiresTenantVersion`.
pub fn check_stages(n: &NewRollout) -> Result<Option<semver::VersionReq>> {
    check_environment(&n.environment).map_err(|m| Error::bad_input("input.environment", m))?;
    if n.stages.is_empty() || n.stages.len() > 20 {
        return Err(Error::bad_input(
            "input.stages",
            "a rollout needs 1 to 20 stages",
        ));
    }
    if n.ack_deadline_seconds < 1 {
        return Err(Error::bad_input(
            "input.ackDeadlineSeconds",
            "ackDeadlineSeconds must be at least 1",
        ));
    }
    let mut last = 0.0;
    for (i, s) in n.stages.iter().enumerate() {
        let field = format!("input.stages[{i}]");
        if s.name.trim().is_empty() || s.name.len() > 64 {
            return Err(Error::bad_input(
                format!("{field}.name"),
                "stage names must be 1 to 64 characters",
            ));
        }
        if s.soak_seconds < 0 {
            return Err(Error::bad_input(
                format!("{field}.soakSeconds"),
                "soakSeconds must not be negative",
            ));
        }
        if let Some(p) = s.cohort.percentage {
            check_percentage(p)
                .map_err(|m| Error::bad_input(format!("{field}.cohort.percentage"), m))?;
            if p < last {
                return Err(Error::bad_input(
                    format!("{field}.cohort.percentage"),
                    format!("stage percentages must not go down: {p} after {last}"),
                ));
            }
            last = p;
        }
        if let Some(r) = s.gates.max_error_rate
            && !(r.is_finite() && (0.0..=1.0).contains(&r))
        {
            return Err(Error::bad_input(
                format!("{field}.gates.maxErrorRate"),
                "maxErrorRate must be between 0 and 1",
            ));
        }
        if s.gates.min_requests.is_some_and(|m| m < 0) {
            return Err(Error::bad_input(
                format!("{field}.gates.minRequests"),
                "minRequests must not be negative",
            ));
        }
    }
    n.requires_tenant_version
        .as_deref()
        .map(|r| {
            semver::VersionReq::parse(r).map_err(|e| {
                Error::bad_input(
                    "input.requiresTenantVersion",
                    format!("`{r}` is not a semver range: {e}"),
                )
            })
        })
        .transpose()
}
