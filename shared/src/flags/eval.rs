//! Evaluation from a compiled in-memory snapshot: tenant sets are hashed,
//! ranges parsed and split bounds computed once, at compile time, so an
//! evaluation is a few lookups. The cell and `tenantctl flags eval` run the
//! same code on the same snapshot, so they give the same answer.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::bucket::{bucket, threshold};
use super::def::{Constraint, FlagDef, Operator, Rule};
use super::rollout::{Cohort, RolloutPlan};

/// What evaluation knows of a tenant, from its home cell's records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantAttrs {
    /// The tenant's id (attribute `tenantId`).
    pub id: Uuid,
    /// Its plan, e.g. `pro` (attribute `plan`).
    pub plan: String,
    /// Its region (attribute `region`).
    pub region: String,
    /// Its home cell's id (attribute `cell`).
    pub cell: String,
    /// Its record's version (attribute `version`), compared as a number or
    /// as the semver version `N.0.0`.
    pub version: i64,
}

/// Everything evaluation needs, as stored in the cell and in snapshot files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Every flag definition the cell holds.
    pub flags: Vec<StoredFlag>,
    /// Rollout plans; only those in an exposing state take effect.
    pub rollouts: Vec<RolloutPlan>,
    /// The tenants evaluation can answer for: the cell's own.
    pub tenants: Vec<TenantAttrs>,
}

/// A flag definition with the sync version it was applied at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredFlag {
    /// The definition.
    pub def: FlagDef,
    /// The global tier's version of it; increases with every change.
    pub version: i64,
}

/// OpenFeature resolution reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// A rule (or a rollout stage) without a percentage split matched.
    TargetingMatch,
    /// A rule (or a rollout stage) matched and the tenant's bucket fell in its split.
    Split,
    /// No rule matched: the environment's default variant.
    Default,
    /// The off variant: the flag is off, killed, archived or not targeted in
    /// the environment.
    Disabled,
    /// The flag could not be evaluated; see the error code.
    Error,
}

/// OpenFeature error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// No flag has the key asked for.
    FlagNotFound,
    /// Prerequisites nest too deeply; the off variant is served.
    General,
}

/// One flag's answer, borrowed from the snapshot: evaluating allocates nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation<'a> {
    /// The flag asked for.
    pub flag_key: &'a str,
    /// The served variant's value; `null` for an unknown flag.
    pub value: &'a Value,
    /// The served variant's name; `None` for an unknown flag.
    pub variant: Option<&'a str>,
    /// Why this variant was served.
    pub reason: Reason,
    /// Set when `reason` is [`Reason::Error`].
    pub error_code: Option<ErrorCode>,
}

static NULL: Value = Value::Null;

type FastMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

/// Custom attributes of an evaluation request.
pub type Context = HashMap<String, Value>;

/// Evaluation was asked for a tenant the snapshot does not hold (not a
/// tenant of this cell).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant {0} is not a tenant of this cell")]
pub struct UnknownTenant(pub Uuid);

enum Attr {
    Plan,
    Region,
    Cell,
    Version,
    TenantId,
    Custom(String),
}

impl Attr {
    fn parse(name: &str) -> Self {
        match name {
            "plan" => Attr::Plan,
            "region" => Attr::Region,
            "cell" => Attr::Cell,
            "version" => Attr::Version,
            "tenantId" => Attr::TenantId,
            other => Attr::Custom(other.to_owned()),
        }
    }

    /// The attribute's value; built-in string attributes are borrowed.
    fn get<'a>(&self, t: &'a TenantAttrs, ctx: &'a Context) -> Option<Cow<'a, str>> {
        Some(match self {
            Attr::Plan => Cow::Borrowed(t.plan.as_str()),
            Attr::Region => Cow::Borrowed(t.region.as_str()),
            Attr::Cell => Cow::Borrowed(t.cell.as_str()),
            Attr::Version => Cow::Owned(t.version.to_string()),
            Attr::TenantId => Cow::Owned(t.id.to_string()),
            Attr::Custom(k) => match ctx.get(k)? {
                Value::String(s) => Cow::Borrowed(s.as_str()),
                Value::Null => return None,
                other => Cow::Owned(other.to_string()),
            },
        })
    }
}

type FastSet<T> = HashSet<T, rustc_hash::FxBuildHasher>;

enum Test {
    In(FastSet<String>),
    NotIn(FastSet<String>),
    Cmp(Operator, f64),
    Semver(semver::VersionReq),
    Prefix(Vec<String>),
}

struct Cond {
    attr: Attr,
    test: Test,
}

/// A tenant's `version` (an integer) or a custom `1.2.3` as a semver version.
fn as_version(s: &str) -> Option<semver::Version> {
    semver::Version::parse(s)
        .ok()
        .or_else(|| s.parse::<u64>().ok().map(|n| semver::Version::new(n, 0, 0)))
}

impl Cond {
    fn compile(c: &Constraint) -> Option<Self> {
        let set = || c.values.iter().cloned().collect::<FastSet<_>>();
        let test = match c.operator {
            Operator::In => Test::In(set()),
            Operator::NotIn => Test::NotIn(set()),
            Operator::Prefix => Test::Prefix(c.values.clone()),
            Operator::Semver => Test::Semver(semver::VersionReq::parse(c.values.first()?).ok()?),
            op => Test::Cmp(op, c.values.first()?.trim().parse().ok()?),
        };
        Some(Self {
            attr: Attr::parse(&c.attribute),
            test,
        })
    }

    fn holds(&self, t: &TenantAttrs, ctx: &Context) -> bool {
        // The tenant's version is a number: compare it as one.
        if let Attr::Version = self.attr {
            match &self.test {
                Test::Cmp(op, bound) => return compare(*op, t.version as f64, *bound),
                Test::Semver(r) => {
                    return r.matches(&semver::Version::new(t.version.max(0) as u64, 0, 0));
                }
                _ => {}
            }
        }
        let v = self.attr.get(t, ctx);
        match (&self.test, v) {
            (Test::NotIn(s), None) => !s.is_empty(),
            (_, None) => false,
            (Test::In(s), Some(v)) => s.contains(v.as_ref()),
            (Test::NotIn(s), Some(v)) => !s.contains(v.as_ref()),
            (Test::Prefix(p), Some(v)) => p.iter().any(|p| v.starts_with(p.as_str())),
            (Test::Semver(r), Some(v)) => as_version(&v).is_some_and(|v| r.matches(&v)),
            (Test::Cmp(op, bound), Some(v)) => v
                .trim()
                .parse::<f64>()
                .is_ok_and(|x| compare(*op, x, *bound)),
        }
    }
}

fn compare(op: Operator, x: f64, bound: f64) -> bool {
    match op {
        Operator::Lt => x < bound,
        Operator::Lte => x <= bound,
        Operator::Gt => x > bound,
        _ => x >= bound,
    }
}

struct CRule {
    variant: usize,
    tenants: FastSet<Uuid>,
    conds: Vec<Cond>,
    prereqs: Vec<(String, String)>,
    split: Option<u32>,
}

struct CCohort {
    tenants: FastSet<Uuid>,
    cells: FastSet<String>,
    regions: FastSet<String>,
    plans: FastSet<String>,
    split: Option<u32>,
}

impl CCohort {
    fn compile(c: &Cohort) -> Self {
        Self {
            tenants: c.tenant_ids.iter().copied().collect(),
            cells: c.cell_ids.iter().cloned().collect(),
            regions: c.regions.iter().cloned().collect(),
            plans: c.plans.iter().cloned().collect(),
            split: c.percentage.map(threshold),
        }
    }

    fn matches(&self, t: &TenantAttrs, bucket: impl Fn() -> u32) -> bool {
        (self.tenants.is_empty() || self.tenants.contains(&t.id))
            && (self.cells.is_empty() || self.cells.contains(&t.cell))
            && (self.regions.is_empty() || self.regions.contains(&t.region))
            && (self.plans.is_empty() || self.plans.contains(&t.plan))
            && self.split.is_none_or(|s| bucket() < s)
    }
}

/// A rollout's current exposure: the union of its stages' cohorts so far.
struct Overlay {
    variant: usize,
    cohorts: Vec<CCohort>,
    requires: Option<semver::VersionReq>,
}

impl Overlay {
    /// Whether `t` is exposed, and whether by a split.
    fn exposes(&self, t: &TenantAttrs, salt: &str) -> Option<bool> {
        if !self.admits(t) {
            return None;
        }
        let b = std::cell::OnceCell::new();
        let get = || *b.get_or_init(|| bucket(salt, t.id));
        self.cohorts
            .iter()
            .find(|c| c.matches(t, get))
            .map(|c| c.split.is_some())
    }

    /// Whether the tenant's version is one the rollout may reach.
    fn admits(&self, t: &TenantAttrs) -> bool {
        self.requires
            .as_ref()
            .is_none_or(|r| as_version(&t.version.to_string()).is_some_and(|v| r.matches(&v)))
    }
}

#[derive(Default)]
struct CEnv {
    name: String,
    enabled: bool,
    killed: bool,
    rules: Vec<CRule>,
    default: usize,
    rollout: Option<Overlay>,
}

struct CFlag {
    def: FlagDef,
    salt: String,
    off: usize,
    /// Few per flag: a scan beats hashing the name.
    envs: Vec<CEnv>,
}

impl CFlag {
    fn env(&self, name: &str) -> Option<&CEnv> {
        self.envs.iter().find(|e| e.name == name)
    }
}

/// A compiled snapshot: what [`Engine::evaluate`] answers from. Immutable;
/// a new snapshot is compiled into a new engine.
#[derive(Default)]
pub struct Engine {
    flags: FastMap<String, CFlag>,
    keys: Vec<String>,
    tenants: FastMap<Uuid, TenantAttrs>,
}

fn index(def: &FlagDef, name: &str) -> Option<usize> {
    def.variants.iter().position(|v| v.name == name)
}

fn compile_rule(def: &FlagDef, r: &Rule) -> Option<CRule> {
    Some(CRule {
        variant: index(def, &r.variant)?,
        tenants: r.tenant_ids.iter().copied().collect(),
        conds: r
            .constraints
            .iter()
            .map(Cond::compile)
            .collect::<Option<_>>()?,
        prereqs: r
            .prerequisites
            .iter()
            .map(|p| (p.flag_key.clone(), p.variant.clone()))
            .collect(),
        split: r.percentage.map(threshold),
    })
}

const MAX_PREREQ_DEPTH: usize = 16;

impl Engine {
    /// Compiles `snap`. Flags whose off variant is missing, rules that do
    /// not compile and rollouts of unknown flags or variants are left out
    /// rather than failing the snapshot; writes are checked, so none should be.
    pub fn compile(snap: &Snapshot) -> Self {
        let mut flags = FastMap::default();
        for f in &snap.flags {
            let def = &f.def;
            let Some(off) = index(def, &def.off_variant) else {
                continue;
            };
            let mut envs = Vec::new();
            for (name, t) in &def.environments {
                // A rule that does not compile (never stored: writes are
                // checked) is left out rather than failing the flag.
                let rules = t
                    .rules
                    .iter()
                    .filter_map(|r| compile_rule(def, r))
                    .collect();
                let default = t
                    .default_variant
                    .as_deref()
                    .and_then(|d| index(def, d))
                    .unwrap_or(off);
                envs.push(CEnv {
                    name: name.clone(),
                    enabled: t.enabled,
                    killed: t.killed,
                    rules,
                    default,
                    rollout: None,
                });
            }
            flags.insert(
                def.key.clone(),
                CFlag {
                    salt: def.salt().to_owned(),
                    off,
                    envs,
                    def: def.clone(),
                },
            );
        }
        for r in snap.rollouts.iter().filter(|r| r.state.exposes()) {
            let Some(f) = flags.get_mut(&r.flag_key) else {
                continue;
            };
            let Some(variant) = index(&f.def, &r.variant) else {
                continue;
            };
            let at = match f.envs.iter().position(|e| e.name == r.environment) {
                Some(i) => i,
                None => {
                    f.envs.push(CEnv {
                        name: r.environment.clone(),
                        default: f.off,
                        ..Default::default()
                    });
                    f.envs.len() - 1
                }
            };
            let env = &mut f.envs[at];
            env.rollout = Some(Overlay {
                variant,
                cohorts: r
                    .stages
                    .iter()
                    .take(r.stage + 1)
                    .map(|s| CCohort::compile(&s.cohort))
                    .collect(),
                requires: r
                    .requires_tenant_version
                    .as_deref()
                    .and_then(|v| semver::VersionReq::parse(v).ok()),
            });
        }
        let mut keys: Vec<String> = flags.keys().cloned().collect();
        keys.sort();
        let mut tenants = FastMap::default();
        tenants.extend(snap.tenants.iter().map(|t| (t.id, t.clone())));
        Self {
            flags,
            keys,
            tenants,
        }
    }

    /// The attributes of tenant `id`, if the snapshot holds it.
    pub fn tenant(&self, id: Uuid) -> Option<&TenantAttrs> {
        self.tenants.get(&id)
    }

    /// Every tenant of the snapshot, in no particular order.
    pub fn tenant_ids(&self) -> impl Iterator<Item = &Uuid> {
        self.tenants.keys()
    }

    /// Whether `variant`, served for flag `key`, is anything but its off
    /// variant (an unknown flag serves nothing).
    pub fn serves_on(&self, key: &str, variant: Option<&str>) -> bool {
        match (self.flags.get(key), variant) {
            (Some(f), Some(v)) => f.def.off_variant != v,
            _ => false,
        }
    }

    /// How many flags compiled.
    pub fn flag_count(&self) -> usize {
        self.flags.len()
    }

    /// One flag for one tenant in environment `env`; `ctx` holds custom
    /// attributes. An unknown flag is an [`Reason::Error`] answer, not an error.
    pub fn evaluate<'a>(
        &'a self,
        tenant: Uuid,
        flag: &'a str,
        env: &str,
        ctx: &Context,
    ) -> Result<Evaluation<'a>, UnknownTenant> {
        let t = self.tenants.get(&tenant).ok_or(UnknownTenant(tenant))?;
        Ok(self.eval(t, flag, env, ctx, 0))
    }

    /// Every flag for one tenant in `env`, sorted by key.
    pub fn evaluate_all(
        &self,
        tenant: Uuid,
        env: &str,
        ctx: &Context,
    ) -> Result<Vec<Evaluation<'_>>, UnknownTenant> {
        let t = self.tenants.get(&tenant).ok_or(UnknownTenant(tenant))?;
        Ok(self
            .keys
            .iter()
            .map(|k| self.eval(t, k, env, ctx, 0))
            .collect())
    }

    /// How many of this snapshot's tenants a rollout exposes now, and how
    /// many its version requirement keeps out.
    pub fn rollout_exposure(&self, flag: &str, env: &str) -> (usize, usize) {
        let Some(f) = self.flags.get(flag) else {
            return (0, 0);
        };
        let Some(o) = f.env(env).and_then(|e| e.rollout.as_ref()) else {
            return (0, 0);
        };
        let mut exposed = 0;
        let mut excluded = 0;
        for t in self.tenants.values() {
            if !o.admits(t) {
                excluded += 1;
            } else if o.exposes(t, &f.salt).is_some() {
                exposed += 1;
            }
        }
        (exposed, excluded)
    }

    fn eval<'a>(
        &'a self,
        t: &TenantAttrs,
        key: &'a str,
        env: &str,
        ctx: &Context,
        depth: usize,
    ) -> Evaluation<'a> {
        let Some(f) = self.flags.get(key) else {
            return Evaluation {
                flag_key: key,
                value: &NULL,
                variant: None,
                reason: Reason::Error,
                error_code: Some(ErrorCode::FlagNotFound),
            };
        };
        let serve = |i: usize, reason: Reason| {
            let v = &f.def.variants[i];
            Evaluation {
                flag_key: &f.def.key,
                value: &v.value,
                variant: Some(v.name.as_str()),
                reason,
                error_code: None,
            }
        };
        if depth > MAX_PREREQ_DEPTH {
            let mut e = serve(f.off, Reason::Error);
            e.error_code = Some(ErrorCode::General);
            return e;
        }
        let Some(e) = f.env(env) else {
            return serve(f.off, Reason::Disabled);
        };
        if f.def.archived || e.killed {
            return serve(f.off, Reason::Disabled);
        }
        if let Some(o) = &e.rollout
            && let Some(split) = o.exposes(t, &f.salt)
        {
            let reason = if split {
                Reason::Split
            } else {
                Reason::TargetingMatch
            };
            return serve(o.variant, reason);
        }
        if !e.enabled {
            return serve(f.off, Reason::Disabled);
        }
        let b = std::cell::OnceCell::new();
        for r in &e.rules {
            if !r.tenants.is_empty() && !r.tenants.contains(&t.id) {
                continue;
            }
            if !r.conds.iter().all(|c| c.holds(t, ctx)) {
                continue;
            }
            if !r
                .prereqs
                .iter()
                .all(|(k, v)| self.eval(t, k, env, ctx, depth + 1).variant == Some(v.as_str()))
            {
                continue;
            }
            if let Some(s) = r.split {
                if *b.get_or_init(|| bucket(&f.salt, t.id)) >= s {
                    continue;
                }
                return serve(r.variant, Reason::Split);
            }
            return serve(r.variant, Reason::TargetingMatch);
        }
        serve(e.default, Reason::Default)
    }
}
