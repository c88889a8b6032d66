//! What a GraphQL request was about, for its metrics: the operation (the
//! first root field of the executed operation), and the tenant it acted on
//! with that tenant's cell and plan when known.
//!
//! The operation and an obvious tenant argument (`tenantId`, `input.tenantId`,
//! `tenant(id:)`) are read from the parsed document before execution;
//! resolvers that know more (the directory row of the tenant) fill in the
//! rest through `shared::server::record_tenant*`. Whatever a request named a
//! tenant for and no resolver placed is placed after execution by the tier's
//! [`PlacementLookup`] (one read by primary key), so every tenant-scoped
//! operation carries its tenant's `cell` and `plan` labels.

use std::sync::{Arc, Mutex};

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, Selection,
};
use async_graphql::{Name, Value, Variables};

use crate::ids::TenantId;

/// Where a tenant lives and on what plan, `(cell, plan)`, as the tier's own
/// records say (the directory at the global tier, the tenant's record in a
/// cell); `None` for a tenant it does not know.
#[async_trait::async_trait]
pub trait PlacementLookup: Send + Sync {
    /// `(cell, plan)` of `tenant` (its id as text), either unknown when `None`.
    async fn placement(&self, tenant: &str) -> Option<(Option<String>, Option<String>)>;
}

/// How long the lookup may take before the request's metrics go without it.
pub const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(250);

impl RequestFacts {
    /// Fills a missing cell or plan of the request's tenant through `lookup`.
    pub async fn complete(&self, lookup: &dyn PlacementLookup) {
        let f = self.snapshot();
        let Some(tenant) = f.tenant.filter(|_| f.cell.is_none() || f.plan.is_none()) else {
            return;
        };
        if let Ok(Some((cell, plan))) =
            tokio::time::timeout(LOOKUP_TIMEOUT, lookup.placement(&tenant)).await
        {
            self.set_placement(cell.as_deref(), plan.as_deref());
        }
    }
}

/// The facts of one request; shared between the HTTP handler and resolvers.
#[derive(Clone, Default)]
pub struct RequestFacts(Arc<Mutex<Facts>>);

/// What is known of one request so far; missing parts are labelled
/// `unknown` (operation) or empty (cell, plan).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The first root field, once the request was executed.
    pub operation: Option<String>,
    /// The id of the tenant the request acted on.
    pub tenant: Option<String>,
    /// That tenant's home cell id.
    pub cell: Option<String>,
    /// That tenant's plan.
    pub plan: Option<String>,
}

impl RequestFacts {
    /// Names the tenant the request acts on.
    pub fn set_tenant(&self, tenant: &dyn std::fmt::Display) {
        self.lock().tenant = Some(tenant.to_string());
    }

    /// Sets the tenant's cell and plan; `None` or empty leaves a part as it was.
    pub fn set_placement(&self, cell: Option<&str>, plan: Option<&str>) {
        let mut g = self.lock();
        if let Some(c) = cell.filter(|c| !c.is_empty()) {
            g.cell = Some(c.to_owned());
        }
        if let Some(p) = plan.filter(|p| !p.is_empty()) {
            g.plan = Some(p.to_owned());
        }
    }

    /// Sets (or clears) the operation name.
    pub fn set_operation(&self, operation: Option<String>) {
        self.lock().operation = operation;
    }

    /// A copy of the facts as they stand.
    pub fn snapshot(&self) -> Facts {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Facts> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The root field name and tenant argument of the operation `name` selects
/// in `doc`. The field name is not checked against the schema here: callers
/// use it only once the request was executed (so it validated).
pub fn inspect(
    doc: &ExecutableDocument,
    name: Option<&str>,
    vars: &Variables,
) -> (Option<String>, Option<String>) {
    let op: Option<&OperationDefinition> = match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(n)) => ops.get(n).map(|o| &o.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|o| &o.node)
        }
        _ => None,
    };
    let Some(op) = op else {
        return (None, None);
    };
    let field = op
        .selection_set
        .node
        .items
        .iter()
        .find_map(|s| match &s.node {
            Selection::Field(f) => Some(&f.node),
            _ => None,
        });
    let Some(field) = field else {
        return (None, None);
    };
    let fname = field.name.node.as_str();
    let arg = |key: &str| {
        field
            .get_argument(key)
            .and_then(|v| v.node.clone().into_const_with(|n| var(vars, &n)).ok())
    };
    let tenant = arg("tenantId")
        .or_else(|| {
            arg("input").and_then(|v| match v {
                Value::Object(o) => o.get("tenantId").cloned(),
                _ => None,
            })
        })
        .or_else(|| (fname == "tenant").then(|| arg("id")).flatten())
        .and_then(|v| match v {
            Value::String(s) => s.parse::<TenantId>().ok().map(|t| t.to_string()),
            _ => None,
        });
    (Some(fname.to_owned()), tenant)
}

fn var(vars: &Variables, n: &Name) -> Result<Value, ()> {
    Ok(vars.get(n).cloned().unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        q: &str,
        name: Option<&str>,
        vars: serde_json::Value,
    ) -> (Option<String>, Option<String>) {
        let doc = async_graphql::parser::parse_query(q).unwrap();
        inspect(&doc, name, &Variables::from_json(vars))
    }

    #[test]
    fn reads_the_first_root_field_and_the_tenant_argument() {
        let t = "0192f0c8-0000-7000-8000-000000000001";
        assert_eq!(
            run(
                "query($id: ID!) { tenant(id: $id) { id } }",
                None,
                serde_json::json!({ "id": t })
            ),
            (Some("tenant".into()), Some(t.into()))
        );
        assert_eq!(
            run(
                &format!(
                    "mutation {{ updateTenantConfig(input: {{tenantId: \"{t}\", set: []}}) {{ version }} }}"
                ),
                None,
                serde_json::json!({})
            ),
            (Some("updateTenantConfig".into()), Some(t.into()))
        );
        assert_eq!(
            run(
                "query A { cells { id } } query B($t: ID!) { effectiveConfig(tenantId: $t) { key } }",
                Some("B"),
                serde_json::json!({ "t": t })
            ),
            (Some("effectiveConfig".into()), Some(t.into()))
        );
        // Not a tenant id: no tenant.
        assert_eq!(
            run(
                "{ tenant(id: \"nope\") { id } }",
                None,
                serde_json::json!({})
            ),
            (Some("tenant".into()), None)
        );
        assert_eq!(
            run("{ cells { id } }", None, serde_json::json!({})),
            (Some("cells".into()), None)
        );
    }
}
