//! Feature flags in the global API: thin resolvers over `service::flags`,
//! each write audited with its actor and outcome.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use serde_json::json;
use shared::IntoGql;
use shared::auth::{Principal, Role};
use shared::flags::store::Row;
use shared::flags::{Kind, Rule, StoredFlag, Variant};

use super::args::idempotency_key;
use super::audited::{Target, audited};
use super::auth::caller;
use crate::service::flags::{self, FlagChange, NewFlag, TargetingChange};

#[derive(Default)]
pub struct FlagQuery;

#[derive(Default)]
pub struct FlagMutation;

/// A flag's state in one environment.
#[derive(SimpleObject)]
pub struct FlagEnvironment {
    pub name: String,
    pub enabled: bool,
    /// Turned off by the kill switch.
    pub killed: bool,
    pub rules: Vec<Rule>,
    pub default_variant: Option<String>,
}

#[derive(SimpleObject)]
pub struct Flag {
    pub key: String,
    pub description: String,
    pub kind: Kind,
    pub variants: Vec<Variant>,
    pub off_variant: String,
    /// What percentage buckets hash with the tenant id.
    pub salt: String,
    pub archived: bool,
    pub version: i64,
    pub updated_at: Option<DateTime<Utc>>,
    /// Environments with targeting; every other environment is off.
    pub environments: Vec<FlagEnvironment>,
}

impl Flag {
    fn new(f: StoredFlag, updated_at: Option<DateTime<Utc>>) -> Self {
        let d = f.def;
        Self {
            salt: d.salt().to_owned(),
            environments: d
                .environments
                .into_iter()
                .map(|(name, t)| FlagEnvironment {
                    name,
                    enabled: t.enabled,
                    killed: t.killed,
                    rules: t.rules,
                    default_variant: t.default_variant,
                })
                .collect(),
            key: d.key,
            description: d.description,
            kind: d.kind,
            variants: d.variants,
            off_variant: d.off_variant,
            archived: d.archived,
            version: f.version,
            updated_at,
        }
    }
}

impl From<Row> for Flag {
    fn from(r: Row) -> Self {
        Flag::new(r.flag, Some(r.updated_at))
    }
}

#[derive(InputObject)]
pub struct CreateFlagInput {
    pub key: String,
    #[graphql(default)]
    pub description: String,
    pub kind: Kind,
    pub variants: Vec<Variant>,
    pub off_variant: String,
    /// Defaults to the key.
    pub salt: Option<String>,
    pub idempotency_key: String,
}

#[derive(InputObject)]
pub struct UpdateFlagInput {
    pub key: String,
    pub description: Option<String>,
    pub variants: Option<Vec<Variant>>,
    pub off_variant: Option<String>,
    pub expected_version: i64,
    pub idempotency_key: String,
}

#[derive(InputObject)]
pub struct SetFlagTargetingInput {
    pub key: String,
    pub environment: String,
    pub enabled: bool,
    #[graphql(default)]
    pub rules: Vec<Rule>,
    pub default_variant: Option<String>,
    pub expected_version: i64,
    pub idempotency_key: String,
}

#[derive(InputObject)]
pub struct ArchiveFlagInput {
    pub key: String,
    pub expected_version: i64,
    pub idempotency_key: String,
}

fn may_read(p: &Principal) -> shared::Result<()> {
    if p.reads_everything() || p.has(Role::Service) {
        Ok(())
    } else {
        Err(shared::Error::Forbidden(
            "reading flags needs platform-admin, sre or a service identity".into(),
        ))
    }
}

#[Object]
impl FlagQuery {
    /// One flag by key.
    async fn flag(&self, ctx: &Context<'_>, key: String) -> Result<Option<Flag>> {
        let (st, p) = caller(ctx).gql()?;
        may_read(p).gql()?;
        Ok(flags::get(st, &key).await.gql()?.map(Into::into))
    }

    /// Every flag and rollout plan with its version, as the cells hold
    /// them (their resync and anti-entropy read this).
    async fn flag_snapshot(&self, ctx: &Context<'_>) -> Result<serde_json::Value> {
        let (st, p) = caller(ctx).gql()?;
        may_read(p).gql()?;
        flags::snapshot(st).await.gql()
    }

    /// Every flag; with `stale: true`, only those unchanged for `staleDays`
    /// days that serve one variant to every tenant.
    async fn flags(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] stale: bool,
        #[graphql(default = 30)] stale_days: i64,
        #[graphql(default = true)] include_archived: bool,
    ) -> Result<Vec<Flag>> {
        let (st, p) = caller(ctx).gql()?;
        may_read(p).gql()?;
        if stale_days < 0 {
            return Err(
                shared::Error::bad_input("staleDays", "staleDays must not be negative").into_gql(),
            );
        }
        let rows = if stale {
            flags::stale_flags(st, stale_days).await
        } else {
            flags::all(st).await
        }
        .gql()?;
        Ok(rows
            .into_iter()
            .filter(|r| include_archived || !r.flag.def.archived)
            .map(Into::into)
            .collect())
    }
}

fn flag(s: StoredFlag) -> Flag {
    Flag::new(s, None)
}

#[Object]
impl FlagMutation {
    /// Creates a flag, off in every environment (it serves `offVariant`).
    async fn create_flag(&self, ctx: &Context<'_>, input: CreateFlagInput) -> Result<Flag> {
        let detail = json!({ "key": input.key, "kind": input.kind, "variants": input.variants.iter().map(|v| &v.name).collect::<Vec<_>>(), "idempotencyKey": input.idempotency_key });
        let target = Target::Input(Some(input.key.clone()));
        audited(
            ctx,
            "createFlag",
            &[Role::PlatformAdmin],
            detail,
            target,
            async |st, p| {
                let key = idempotency_key(&input.idempotency_key)?;
                let new = NewFlag {
                    key: input.key,
                    description: input.description,
                    kind: input.kind,
                    variants: input.variants,
                    off_variant: input.off_variant,
                    salt: input.salt,
                };
                flags::create(st, &p.subject, &key, new).await
            },
        )
        .await
        .map(flag)
    }

    /// Changes a flag's description, variants or off variant.
    async fn update_flag(&self, ctx: &Context<'_>, input: UpdateFlagInput) -> Result<Flag> {
        let detail = json!({ "key": input.key, "description": input.description, "variants": input.variants, "offVariant": input.off_variant, "expectedVersion": input.expected_version });
        let target = Target::Input(Some(input.key.clone()));
        audited(
            ctx,
            "updateFlag",
            &[Role::PlatformAdmin],
            detail,
            target,
            async |st, p| {
                let key = idempotency_key(&input.idempotency_key)?;
                let change = FlagChange {
                    key: input.key,
                    description: input.description,
                    variants: input.variants,
                    off_variant: input.off_variant,
                    expected_version: input.expected_version,
                };
                flags::update(st, &p.subject, &key, change).await
            },
        )
        .await
        .map(flag)
    }

    /// Sets a flag's targeting in one environment (and lifts a kill there).
    async fn set_flag_targeting(
        &self,
        ctx: &Context<'_>,
        input: SetFlagTargetingInput,
    ) -> Result<Flag> {
        let detail = json!({ "key": input.key, "environment": input.environment, "enabled": input.enabled, "rules": input.rules, "defaultVariant": input.default_variant, "expectedVersion": input.expected_version });
        let target = Target::Input(Some(input.key.clone()));
        audited(
            ctx,
            "setFlagTargeting",
            &[Role::PlatformAdmin],
            detail,
            target,
            async |st, p| {
                let key = idempotency_key(&input.idempotency_key)?;
                let change = TargetingChange {
                    key: input.key,
                    environment: input.environment,
                    enabled: input.enabled,
                    rules: input.rules,
                    default_variant: input.default_variant,
                    expected_version: input.expected_version,
                };
                flags::set_targeting(st, &p.subject, &key, change).await
            },
        )
        .await
        .map(flag)
    }

    /// Archives a flag: it serves its off variant everywhere.
    async fn archive_flag(&self, ctx: &Context<'_>, input: ArchiveFlagInput) -> Result<Flag> {
        let detail = json!({ "key": input.key, "expectedVersion": input.expected_version });
        let target = Target::Input(Some(input.key.clone()));
        audited(
            ctx,
            "archiveFlag",
            &[Role::PlatformAdmin],
            detail,
            target,
            async |st, p| {
                let key = idempotency_key(&input.idempotency_key)?;
                flags::archive(st, &p.subject, &key, &input.key, input.expected_version).await
            },
        )
        .await
        .map(flag)
    }

    /// The kill switch: the flag serves its off variant in `environment` in
    /// every cell, on the fastest path. Safe to repeat.
    async fn kill_flag(&self, ctx: &Context<'_>, key: String, environment: String) -> Result<Flag> {
        let detail = json!({ "key": key, "environment": environment });
        let target = Target::Input(Some(key.clone()));
        audited(
            ctx,
            "killFlag",
            &[Role::PlatformAdmin, Role::Sre],
            detail,
            target,
            async |st, _| flags::kill(st, &key, &environment).await,
        )
        .await
        .map(flag)
    }
}
