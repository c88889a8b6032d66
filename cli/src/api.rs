//! `tenantctl` as a client of the global GraphQL API.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{Value, json};

#[derive(clap::Args, Clone)]
pub struct Conn {
    /// The global tier's base URL.
    #[arg(long, env = "TENANTCTL_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Bearer token; without one, a platform-admin token is minted from the dev data dir.
    #[arg(long, env = "TENANTCTL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The dev stack's data dir, used when no token is given.
    #[arg(long, default_value = ".tenantctl")]
    data_dir: PathBuf,
}

#[derive(clap::Subcommand)]
pub enum TenantsCmd {
    /// Create a tenant (safe to retry with the same --idempotency-key).
    Create {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        region: String,
        #[arg(long, default_value = "free")]
        plan: String,
        /// Defaults to a fresh random key.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Show one tenant by id or slug.
    Get {
        #[command(flatten)]
        conn: Conn,
        /// A tenant id or slug.
        tenant: String,
    },
    /// List tenants (first page).
    List {
        #[command(flatten)]
        conn: Conn,
        #[arg(long, default_value_t = 20)]
        first: i32,
        #[arg(long)]
        region: Option<String>,
    },
}

const TENANT_FIELDS: &str = "id slug name region plan status version createdAt cell { id region }";

impl Conn {
    pub(crate) async fn query(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let token = match &self.token {
            Some(t) => t.clone(),
            None => crate::devkey::load(&self.data_dir)?
                .mint(
                    "tenantctl",
                    vec![shared::auth::Role::PlatformAdmin],
                    vec![],
                    None,
                    300,
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        };
        let resp: Value = reqwest::Client::new()
            .post(format!("{}/graphql", self.url.trim_end_matches('/')))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.url))?
            .json()
            .await
            .context("unreadable answer")?;
        if let Some(errors) = resp
            .get("errors")
            .and_then(|e| e.as_array())
            .filter(|e| !e.is_empty())
        {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.pointer("/extensions/code")
                            .and_then(|c| c.as_str())
                            .unwrap_or("ERROR"),
                        e.get("message").and_then(|m| m.as_str()).unwrap_or("")
                    )
                })
                .collect();
            anyhow::bail!("{}", lines.join("\n"));
        }
        Ok(resp.get("data").cloned().unwrap_or(Value::Null))
    }
}

fn print(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn tenants(cmd: TenantsCmd) -> anyhow::Result<()> {
    match cmd {
        TenantsCmd::Create {
            conn,
            slug,
            name,
            region,
            plan,
            idempotency_key,
        } => {
            let key = idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let q = format!(
                "mutation($input: CreateTenantInput!) {{ createTenant(input: $input) {{ {TENANT_FIELDS} }} }}"
            );
            let vars = json!({ "input": { "idempotencyKey": key, "slug": slug, "name": name, "region": region, "plan": plan } });
            print(&conn.query(&q, vars).await?["createTenant"])
        }
        TenantsCmd::Get { conn, tenant } => {
            let (q, vars, field) = if uuid::Uuid::parse_str(&tenant).is_ok() {
                (
                    format!("query($id: ID!) {{ tenant(id: $id) {{ {TENANT_FIELDS} }} }}"),
                    json!({ "id": tenant }),
                    "tenant",
                )
            } else {
                (
                    format!(
                        "query($slug: String!) {{ tenantBySlug(slug: $slug) {{ {TENANT_FIELDS} }} }}"
                    ),
                    json!({ "slug": tenant }),
                    "tenantBySlug",
                )
            };
            print(&conn.query(&q, vars).await?[field])
        }
        TenantsCmd::List {
            conn,
            first,
            region,
        } => {
            let q = format!(
                "query($first: Int, $filter: TenantFilter) {{ tenants(first: $first, filter: $filter) {{ totalCount pageInfo {{ hasNextPage endCursor }} edges {{ node {{ {TENANT_FIELDS} }} }} }} }}"
            );
            print(
                &conn
                    .query(
                        &q,
                        json!({ "first": first, "filter": { "region": region } }),
                    )
                    .await?["tenants"],
            )
        }
    }
}

pub async fn cells(conn: Conn) -> anyhow::Result<()> {
    let q = "{ cells { id region endpoint status tenantCount capacity lastHeartbeatAt } }";
    print(&conn.query(q, json!({})).await?["cells"])
}
