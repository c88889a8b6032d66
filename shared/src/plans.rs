//! Plans: default quotas and feature entitlements, and the GraphQL shapes
//! both APIs use for a tenant's plan (the home cell is its authority).

use async_graphql::{Enum, ID, InputObject, SimpleObject};
use serde::{Deserialize, Serialize};

/// Every entitlement a plan may carry.
pub const ENTITLEMENTS: [&str; 4] = ["custom_domains", "audit_export", "sso", "dedicated_cell"];

/// A plan's defaults.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// `free`, `pro` or `enterprise`.
    pub name: &'static str,
    /// Projects a tenant may have.
    pub max_projects: i64,
    /// Environments each project may have.
    pub max_environments_per_project: i64,
    /// Members a tenant may have.
    pub max_members: i64,
    /// The entitlements (of [`ENTITLEMENTS`]) the plan grants.
    pub entitlements: &'static [&'static str],
}

/// Every plan, from the smallest to the largest.
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

/// The plan called `name`; `None` for an unknown plan.
pub fn spec(name: &str) -> Option<Spec> {
    PLANS.iter().copied().find(|p| p.name == name)
}

impl Spec {
    /// The plan's structural limits as the APIs show them, named after the fields.
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
    /// `max_projects`, `max_environments_per_project` or `max_members`.
    pub name: String,
    /// The most the tenant may have.
    pub limit: i64,
}

/// Where an entitlement's value came from.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntitlementSource {
    /// The tenant's plan grants it or not.
    Plan,
    /// An override set for this tenant (`setEntitlementOverride`), whatever the plan says.
    Override,
}

/// One entitlement of a tenant, on or off.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
pub struct Entitlement {
    /// `custom_domains`, `audit_export`, `sso` or `dedicated_cell`.
    pub name: String,
    /// Whether the tenant has it.
    pub enabled: bool,
    /// Whether the plan or an override decided it.
    pub source: EntitlementSource,
}

/// A tenant's plan with its structural limits and effective entitlements.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantPlan {
    /// `free`, `pro` or `enterprise`.
    pub plan: String,
    /// Increases with every plan change or entitlement override.
    pub version: i64,
    /// The plan's structural limits.
    pub limits: Vec<Limit>,
    /// Every entitlement, granted or not.
    pub entitlements: Vec<Entitlement>,
}

/// The selection of `TenantPlan` in GraphQL syntax.
pub const TENANT_PLAN_FIELDS: &str =
    "plan version limits { name limit } entitlements { name enabled source }";

/// Moves a tenant to another plan.
#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangePlanInput {
    /// The tenant whose plan changes.
    pub tenant_id: ID,
    /// `free`, `pro` or `enterprise`.
    pub plan: String,
    /// The plan version (see `planDetails.version`); a stale one is a CONFLICT.
    pub expected_version: i64,
    /// A retry with the same key and input gets the plan back, not a CONFLICT.
    pub idempotency_key: String,
}

/// Grants or withholds one entitlement of a tenant regardless of its plan,
/// or goes back to the plan's.
#[derive(InputObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetEntitlementOverrideInput {
    /// The tenant concerned.
    pub tenant_id: ID,
    /// `custom_domains`, `audit_export`, `sso` or `dedicated_cell`.
    pub name: String,
    /// true or false overrides the plan; null removes the override.
    pub enabled: Option<bool>,
    /// The plan version (see `planDetails.version`); a stale one is a CONFLICT.
    pub expected_version: i64,
    /// A retry with the same key and input gets the plan back, not a CONFLICT.
    pub idempotency_key: String,
}

/// One tenant's plan, in a batch read of several tenants.
#[derive(SimpleObject, Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantPlanOf {
    /// The tenant.
    pub tenant_id: ID,
    /// Its plan, limits and entitlements.
    pub plan: TenantPlan,
}
