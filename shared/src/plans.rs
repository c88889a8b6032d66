//! Plans: default quotas and feature entitlements, and the GraphQL shapes
//! both APIs use for a tenant's plan (the home cell is its authority).

use async_graphql::{Enum, ID, InputObject, SimpleObject};
use serde::{Deserialize, Serialize};

/// Every entitlement a plan may carry.
pub const ENTITLEMENTS: [&str; 4] = ["custom_domains", "audit_export", "sso", "dedicated_cell"];

/// A plan's defaults.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub max_projects: i64,
    pub max_environments_per_project: i64,
    pub max_members: i64,
    pub entitlements: &'static [&'static str],
}

pub const PLANS: [Spec; 3] = [
    Spec {
        name: "free",
        max_projects: 1,
        max_environments_per_project: 3,
        max_members: 3,
        entitlements: &[],
    },
    Spec {
        name: "pro",
        max_projects: 10,
        max_environments_per_project: 10,
        max_members: 50,
        entitlements: &["custom_domains", "audit_export"],
    },
    Spec {
        name: "enterprise",
        max_projects: 1000,
        max_environments_per_project: 50,
        max_members: 10_000,
        entitlements: &["custom_domains", "audit_export", "sso", "dedicated_cell"],
    },
];

pub fn spec(name: &str) -> Option<Spec> {
    PLANS.iter().copied().find(|p| p.name == name)
}

impl Spec {
    pub fn limits(&self) -> Vec<Limit> {
        vec![
            Limit {
                name: "max_projects".into(),
                limit: self.max_projects,
            },
            Limit {
                name: "max_environments_per_project".into(),
                limit: self.max_environments_per_project,
            },
            Limit {
                name: "max_members".into(),
                limit: self.max_members,
            },
        ]
    }
}

/// A structural limit of a plan (projects, environments, members). Metered
/// quotas (rates, periodic counters, gauges) are `quota::plans`.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[graphql(name = "PlanLimit")]
pub struct Limit {
    pub name: String,
    pub limit: i64,
}

/// Where an entitlement's value came from.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntitlementSource {
    Plan,
    Override,
}

#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
pub struct Entitlement {
    pub name: String,
    pub enabled: bool,
    pub source: EntitlementSource,
}

/// A tenant's plan with its structural limits and effective entitlements.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantPlan {
    pub plan: String,
    /// Increases with every plan change or entitlement override.
    pub version: i64,
    pub limits: Vec<Limit>,
    pub entitlements: Vec<Entitlement>,
}

/// The selection of `TenantPlan` in GraphQL syntax.
pub const TENANT_PLAN_FIELDS: &str =
    "plan version limits { name limit } entitlements { name enabled source }";

#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangePlanInput {
    pub tenant_id: ID,
    /// `free`, `pro` or `enterprise`.
    pub plan: String,
    /// The plan version (see `planDetails.version`); a stale one is a CONFLICT.
    pub expected_version: i64,
    /// A retry with the same key and input gets the plan back, not a CONFLICT.
    pub idempotency_key: String,
}

#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetEntitlementOverrideInput {
    pub tenant_id: ID,
    pub name: String,
    /// true or false overrides the plan; null removes the override.
    pub enabled: Option<bool>,
    pub expected_version: i64,
    /// A retry with the same key and input gets the plan back, not a CONFLICT.
    pub idempotency_key: String,
}

/// One tenant's plan, in a batch read of several tenants.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantPlanOf {
    pub tenant_id: ID,
    pub plan: TenantPlan,
}
