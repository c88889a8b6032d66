//! `tenantctl impacted`: which tenants a scope touches, as a table or JSON.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::api::Conn;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    conn: Conn,
    /// A cell id (repeatable).
    #[arg(long = "cell")]
    cells: Vec<String>,
    /// A region (repeatable).
    #[arg(long = "region")]
    regions: Vec<String>,
    /// A plan (repeatable).
    #[arg(long = "plan")]
    plans: Vec<String>,
    /// Tenants this flag serves `--variant` (any but its off variant without one).
    #[arg(long)]
    flag: Option<String>,
    #[arg(long, requires = "flag")]
    variant: Option<String>,
    /// The flag's environment (default prod).
    #[arg(long, requires = "flag")]
    environment: Option<String>,
    /// Tenants whose effective value of this config key is `--config-value`.
    #[arg(long, requires = "config_value")]
    config_key: Option<String>,
    /// JSON, or plain text for a string.
    #[arg(long, requires = "config_key")]
    config_value: Option<String>,
    #[arg(long)]
    incident: Option<String>,
    #[arg(long)]
    maintenance_window: Option<String>,
    #[arg(long)]
    tenant_version: Option<i64>,
    /// Page size (the counts cover every tenant).
    #[arg(long, default_value_t = 100)]
    first: i32,
    #[arg(long)]
    after: Option<String>,
    /// Print the answer as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

const QUERY: &str = "query($s: ImpactScope!, $f: Int, $a: String) { impactedTenants(scope: $s, first: $f, after: $a) { totalCount complete unreachableCells byCell { cellId count } byRegion { region count } tenants { pageInfo { hasNextPage endCursor } edges { node { tenant { id slug } cell { id region } reasons } } } } }";

impl Args {
    fn scope(&self) -> Value {
        let mut s = json!({});
        let mut put = |k: &str, v: Value| {
            if !v.is_null() && v != json!([]) {
                s[k] = v;
            }
        };
        put("cellIds", json!(self.cells));
        put("regions", json!(self.regions));
        put("plans", json!(self.plans));
        put("flagKey", json!(self.flag));
        put("flagVariant", json!(self.variant));
        put("environment", json!(self.environment));
        put("configKey", json!(self.config_key));
        put("configValue", json!(self.config_value));
        put("incidentId", json!(self.incident));
        put("maintenanceWindowId", json!(self.maintenance_window));
        put("tenantVersion", json!(self.tenant_version));
        s
    }
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let vars = json!({ "s": a.scope(), "f": a.first, "a": a.after });
    let data = a.conn.query(QUERY, vars).await?;
    let answer = &data["impactedTenants"];
    if a.json {
        println!("{}", serde_json::to_string_pretty(answer)?);
    } else {
        print!("{}", table(answer));
    }
    Ok(())
}

/// The answer as a table, then counts and what could not be seen.
pub fn table(answer: &Value) -> String {
    let str_of = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    let rows: Vec<[String; 4]> = answer["tenants"]["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .map(|e| {
                    let n = &e["node"];
                    let reasons: Vec<String> = n["reasons"]
                        .as_array()
                        .map(|r| r.iter().map(str_of).collect())
                        .unwrap_or_default();
                    [
                        str_of(&n["tenant"]["id"]),
                        str_of(&n["tenant"]["slug"]),
                        str_of(&n["cell"]["id"]),
                        reasons.join("; "),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let head = ["TENANT", "SLUG", "CELL", "REASONS"];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cols: [&str; 4]| {
        let _ = writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  {}",
            cols[0],
            cols[1],
            cols[2],
            cols[3],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2]
        );
    };
    line(&mut out, head);
    for r in &rows {
        line(&mut out, [&r[0], &r[1], &r[2], &r[3]]);
    }
    let by_cell: Vec<String> = answer["byCell"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| format!("{}={}", str_of(&c["cellId"]), c["count"]))
                .collect()
        })
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\n{} tenants ({}); by cell: {}",
        answer["totalCount"],
        if answer["complete"] == true {
            "complete".to_owned()
        } else {
            format!(
                "INCOMPLETE: unreachable cells {}",
                answer["unreachableCells"]
            )
        },
        if by_cell.is_empty() {
            "-".to_owned()
        } else {
            by_cell.join(", ")
        }
    );
    if answer["tenants"]["pageInfo"]["hasNextPage"] == true {
        let _ = writeln!(
            out,
            "more: --after {}",
            str_of(&answer["tenants"]["pageInfo"]["endCursor"])
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_every_tenant_and_what_could_not_be_seen() {
        let answer = json!({
            "totalCount": 2, "complete": false, "unreachableCells": ["eu-west-1-a"],
            "byCell": [{ "cellId": "us-east-1-a", "count": 1 }, { "cellId": "eu-west-1-a", "count": 1 }],
            "tenants": { "pageInfo": { "hasNextPage": true, "endCursor": "abc" }, "edges": [
                { "node": { "tenant": { "id": "t1", "slug": "acme" }, "cell": { "id": "us-east-1-a" }, "reasons": ["flag k serves on in prod"] } },
                { "node": { "tenant": { "id": "t2", "slug": "globex" }, "cell": { "id": "eu-west-1-a" }, "reasons": ["cell unreachable"] } }
            ] }
        });
        let t = table(&answer);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("TENANT  SLUG    CELL"), "{t}");
        assert!(lines[1].contains("acme") && lines[1].ends_with("flag k serves on in prod"));
        assert!(lines[2].contains("globex") && lines[2].ends_with("cell unreachable"));
        assert!(
            t.contains("2 tenants (INCOMPLETE: unreachable cells [\"eu-west-1-a\"])"),
            "{t}"
        );
        assert!(t.contains("by cell: us-east-1-a=1, eu-west-1-a=1"), "{t}");
        assert!(t.contains("more: --after abc"), "{t}");
    }
}
