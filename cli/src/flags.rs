//! `tenantctl flags`: fetch a cell's flag snapshot, and evaluate flags
//! offline from a snapshot file with the cell's own evaluation code.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;
use shared::flags::{Engine, Snapshot};

#[derive(clap::Subcommand)]
pub enum FlagsCmd {
    /// Save a cell's snapshot (flags, rollouts, its tenants) to a file.
    Snapshot {
        /// The cell's base URL.
        #[arg(long)]
        cell_url: String,
        /// A data-plane token bound to that cell (or a platform-admin token).
        #[arg(long, env = "TENANTCTL_TOKEN", hide_env_values = true)]
        token: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Evaluate a flag (or every flag) for a tenant from a snapshot file.
    Eval {
        #[arg(long)]
        snapshot: PathBuf,
        #[arg(long)]
        tenant: uuid::Uuid,
        /// Leave out for every flag.
        #[arg(long)]
        flag: Option<String>,
        #[arg(long)]
        environment: String,
        /// Custom attributes as a JSON object.
        #[arg(long, default_value = "{}")]
        context: String,
    },
}

pub async fn run(cmd: FlagsCmd) -> anyhow::Result<()> {
    match cmd {
        FlagsCmd::Snapshot {
            cell_url,
            token,
            out,
        } => {
            let resp = reqwest::Client::new()
                .get(format!(
                    "{}/v1/flags/snapshot",
                    cell_url.trim_end_matches('/')
                ))
                .bearer_auth(token)
                .send()
                .await
                .with_context(|| format!("cannot reach {cell_url}"))?;
            let status = resp.status();
            let body: Value = resp.json().await.context("unreadable answer")?;
            if !status.is_success() {
                anyhow::bail!("{status}: {body}");
            }
            let snap: Snapshot = serde_json::from_value(body).context("not a flag snapshot")?;
            std::fs::write(&out, serde_json::to_vec_pretty(&snap)?)
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "{} flags, {} rollouts, {} tenants → {}",
                snap.flags.len(),
                snap.rollouts.len(),
                snap.tenants.len(),
                out.display()
            );
            Ok(())
        }
        FlagsCmd::Eval {
            snapshot,
            tenant,
            flag,
            environment,
            context,
        } => {
            shared::flags::def::check_environment(&environment).map_err(anyhow::Error::msg)?;
            let bytes = std::fs::read(&snapshot)
                .with_context(|| format!("cannot read {}", snapshot.display()))?;
            let snap: Snapshot = serde_json::from_slice(&bytes).context("not a flag snapshot")?;
            let ctx: HashMap<String, Value> =
                serde_json::from_str(&context).context("--context must be a JSON object")?;
            let engine = Engine::compile(&snap);
            let out = match flag {
                Some(f) => {
                    serde_json::to_value(engine.evaluate(tenant, &f, &environment, &ctx)?)?
                }
                None => serde_json::to_value(engine.evaluate_all(tenant, &environment, &ctx)?)?,
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
    }
}
