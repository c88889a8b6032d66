//! Layered configuration: defaults → TOML file → environment and flags
//! (clap reads `PREFIX_` variables for each flag), validated at start.

use std::path::Path;
use std::sync::Arc;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::auth::{self, Keys};

/// Merges `defaults`, then the file if given, then `overrides` (fields left
/// `None` in `overrides` must be skipped when serialized).
pub fn load<T, O>(defaults: T, file: Option<&Path>, overrides: &O) -> Result<T, String>
where
    T: Serialize + DeserializeOwned,
    O: Serialize,
{
    let mut fig = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = file {
        if !path.exists() {
            return Err(format!("config file {} does not exist", path.display()));
        }
        fig = fig.merge(Toml::file(path));
    }
    fig.merge(Serialized::defaults(overrides))
        .extract()
        .map_err(|e| format!("invalid configuration: {e}"))
}

/// How tokens are verified (and service tokens signed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Jwt {
    /// The current HS256 secret: signs service tokens and verifies.
    pub secret: Option<String>,
    /// Older secrets still accepted while tokens signed with them expire.
    #[serde(default)]
    pub previous_secrets: Vec<String>,
    /// The `iss` claim tokens must carry and service tokens get (default `tenantctl`).
    pub issuer: String,
    /// The `aud` claim tokens must carry and service tokens get (default
    /// `tenant-control-plane`).
    pub audience: String,
}

impl Default for Jwt {
    fn default() -> Self {
        Self {
            secret: None,
            previous_secrets: Vec::new(),
            issuer: auth::DEFAULT_ISSUER.into(),
            audience: auth::DEFAULT_AUDIENCE.into(),
        }
    }
}

impl Jwt {
    /// The signing and verifying keys. Errors when `secret` is unset or any
    /// secret is shorter than 32 characters; empty previous secrets are skipped.
    pub fn keys(&self) -> Result<Arc<Keys>, String> {
        let secret = self
            .secret
            .clone()
            .ok_or("jwt.secret is required (env *_JWT_SECRET)")?;
        let mut all = vec![secret];
        all.extend(
            self.previous_secrets
                .iter()
                .filter(|s| !s.is_empty())
                .cloned(),
        );
        Keys::hs256(&all, &self.issuer, &self.audience)
            .map(Arc::new)
            .map_err(|e| e.0)
    }
}

/// Splits a comma-separated flag or variable into a list.
pub fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The database URL for an embedded SQLite file, created if missing.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct C {
        a: u32,
        b: String,
    }

    #[derive(Serialize)]
    struct O {
        #[serde(skip_serializing_if = "Option::is_none")]
        a: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        b: Option<String>,
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = std::env::temp_dir().join(format!("cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "a = 2\nb = \"file\"\n").unwrap();
        let d = C {
            a: 1,
            b: "default".into(),
        };
        let c: C = load(
            d,
            Some(&file),
            &O {
                a: Some(3),
                b: None,
            },
        )
        .unwrap();
        assert_eq!(
            c,
            C {
                a: 3,
                b: "file".into()
            }
        );
        let missing = load(
            C {
                a: 1,
                b: "x".into(),
            },
            Some(&dir.join("nope.toml")),
            &O { a: None, b: None },
        );
        assert!(missing.is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn overrides_nest_by_path() {
        let mut o = Overrides::default();
        o.set("jwt.secret", Some("s"))
            .set("listen", Some("x"))
            .set::<String>("skip", None);
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"jwt": {"secret": "s"}, "listen": "x"})
        );
    }

    #[test]
    fn list_splitting() {
        assert_eq!(split_list(" a, b,,c "), vec!["a", "b", "c"]);
    }
}

/// Values given on the command line or in the environment, by dotted path
/// (`jwt.secret`), to merge over the file.
#[derive(Debug, Default, Serialize)]
#[serde(transparent)]
pub struct Overrides(serde_json::Map<String, serde_json::Value>);

impl Overrides {
    /// Sets the value at dotted `path`; `None` (a flag not given) sets
    /// nothing, so the file's value stays.
    pub fn set<V: Serialize>(&mut self, path: &str, value: Option<V>) -> &mut Self {
        let Some(v) = value else { return self };
        let Ok(v) = serde_json::to_value(v) else {
            return self;
        };
        let mut map = &mut self.0;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                map.insert(part.to_owned(), v);
                break;
            }
            let entry = map
                .entry(part.to_owned())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if !entry.is_object() {
                *entry = serde_json::Value::Object(Default::default());
            }
            map = entry.as_object_mut().expect("just made an object");
        }
        self
    }
}

/// Flags and variables common to both tiers' binaries.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// TOML config file (lowest precedence after built-in defaults).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// HS256 secret (at least 32 characters) that verifies tokens and signs service tokens.
    #[arg(long, hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Comma-separated earlier secrets still accepted during key rotation.
    #[arg(long, hide_env_values = true)]
    pub jwt_previous_secrets: Option<String>,
    /// Expected `iss` claim.
    #[arg(long)]
    pub jwt_issuer: Option<String>,
    /// Expected `aud` claim.
    #[arg(long)]
    pub jwt_audience: Option<String>,
    /// PostgreSQL (or sqlite://) URL of this tier's own database.
    #[arg(long, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Most connections this process opens to its database.
    #[arg(long)]
    pub db_pool_size: Option<u32>,
    /// Redis URL for the sync streams.
    #[arg(long, hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key this deployment uses.
    #[arg(long)]
    pub redis_prefix: Option<String>,
    /// Serve GraphiQL on GET /graphql.
    #[arg(long)]
    pub dev_mode: Option<bool>,
    /// Allow schema introspection.
    #[arg(long)]
    pub introspection: Option<bool>,
    /// json or text.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Largest accepted request body, in bytes.
    #[arg(long)]
    pub max_body_bytes: Option<usize>,
    /// Per-request timeout, in milliseconds.
    #[arg(long)]
    pub request_timeout_ms: Option<u64>,
    /// Maximum GraphQL query depth.
    #[arg(long)]
    pub max_depth: Option<usize>,
    /// Maximum GraphQL query complexity.
    #[arg(long)]
    pub max_complexity: Option<usize>,
    /// Tenants with a request series of their own in /metrics (the rest fold into `other`).
    #[arg(long)]
    pub metrics_top_tenants: Option<usize>,
}

impl CommonArgs {
    /// Adds the flags given to `o`, at the config paths they override
    /// (`jwt.*`, `limits.*`, …).
    pub fn overrides(&self, o: &mut Overrides) {
        o.set("jwt.secret", self.jwt_secret.clone())
            .set(
                "jwt.previous_secrets",
                self.jwt_previous_secrets.as_deref().map(split_list),
            )
            .set("jwt.issuer", self.jwt_issuer.clone())
            .set("jwt.audience", self.jwt_audience.clone())
            .set("database_url", self.database_url.clone())
            .set("db_pool_size", self.db_pool_size)
            .set("redis_url", self.redis_url.clone())
            .set("redis_prefix", self.redis_prefix.clone())
            .set("dev_mode", self.dev_mode)
            .set("introspection", self.introspection)
            .set("log_format", self.log_format.clone())
            .set("limits.max_body_bytes", self.max_body_bytes)
            .set("limits.request_timeout_ms", self.request_timeout_ms)
            .set("limits.max_depth", self.max_depth)
            .set("limits.max_complexity", self.max_complexity)
            .set("limits.metrics_top_tenants", self.metrics_top_tenants);
    }
}

/// Parses the command line of a tier binary, giving every flag an
/// environment variable `PREFIX_FLAG_NAME` (shown by `--help`).
pub fn parse_args<T: clap::Parser>(prefix: &str) -> T {
    let cmd = T::command().mut_args(|a| {
        let id = a.get_id().as_str();
        if id == "help" || id == "version" {
            return a;
        }
        let var = format!("{prefix}{}", id.to_uppercase().replace('-', "_"));
        a.env(&*Box::leak(var.into_boxed_str()))
    });
    let matches = cmd.get_matches();
    <T as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}
