//! A flag's definition: kind, variants, off variant and per-environment
//! targeting, with the checks every write must pass.

use std::collections::{BTreeMap, HashSet};

use async_graphql::{Enum, InputObject, SimpleObject};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::Error;

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "FlagKind")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    Boolean,
    String,
    Number,
    Json,
}

/// One value a flag can serve, by name.
#[derive(SimpleObject, InputObject, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[graphql(name = "FlagVariant", input_name = "FlagVariantInput")]
pub struct Variant {
    pub name: String,
    pub value: Value,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "ConstraintOperator")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operator {
    In,
    NotIn,
    Lt,
    Lte,
    Gt,
    Gte,
    /// `values[0]` is a semver range such as `>=1.2, <2`.
    Semver,
    /// The attribute starts with one of `values`.
    Prefix,
}

/// A condition on a tenant attribute: `plan`, `region`, `cell`, `version`,
/// `tenantId`, or a custom attribute of the evaluation context.
#[derive(SimpleObject, InputObject, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[graphql(name = "FlagConstraint", input_name = "FlagConstraintInput")]
pub struct Constraint {
    pub attribute: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

/// Flag `flag_key` must serve `variant` (in the same environment).
#[derive(SimpleObject, InputObject, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "FlagPrerequisite", input_name = "FlagPrerequisiteInput")]
#[serde(rename_all = "camelCase")]
pub struct Prerequisite {
    pub flag_key: String,
    pub variant: String,
}

/// A targeting rule: it matches a tenant when every condition it states
/// holds (tenant list, constraints, prerequisites, percentage split), and
/// then serves `variant`. Rules are evaluated in order.
#[derive(SimpleObject, InputObject, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[graphql(name = "FlagRule", input_name = "FlagRuleInput")]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub variant: String,
    #[graphql(default)]
    #[serde(default)]
    pub tenant_ids: Vec<Uuid>,
    #[graphql(default)]
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    #[graphql(default)]
    #[serde(default)]
    pub prerequisites: Vec<Prerequisite>,
    /// 0 to 100, in steps of 0.001.
    pub percentage: Option<f64>,
}

/// A flag's state in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Targeting {
    pub enabled: bool,
    /// Set by the kill switch: serves the off variant whatever else says.
    #[serde(default)]
    pub killed: bool,
    pub rules: Vec<Rule>,
    /// Served when no rule matches; the off variant when unset.
    pub default_variant: Option<String>,
}

/// A flag as the global tier owns it and every cell holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagDef {
    pub key: String,
    pub description: String,
    pub kind: Kind,
    pub variants: Vec<Variant>,
    pub off_variant: String,
    /// Percentage buckets hash `"{salt}:{tenantId}"`; the key when unset.
    pub salt: Option<String>,
    pub archived: bool,
    /// Environments with targeting; any other environment is off.
    pub environments: BTreeMap<String, Targeting>,
}

impl FlagDef {
    pub fn salt(&self) -> &str {
        self.salt.as_deref().unwrap_or(&self.key)
    }

    pub fn variant(&self, name: &str) -> Option<&Variant> {
        self.variants.iter().find(|v| v.name == name)
    }

    /// The variants this environment can serve, whatever the tenant.
    pub fn reachable(&self, env: &str) -> HashSet<&str> {
        let mut out = HashSet::new();
        match self.environments.get(env) {
            Some(t) if t.enabled && !t.killed && !self.archived => {
                for r in &t.rules {
                    out.insert(r.variant.as_str());
                }
                out.insert(t.default_variant.as_deref().unwrap_or(&self.off_variant));
            }
            _ => {
                out.insert(self.off_variant.as_str());
            }
        }
        out
    }

    /// Checks the definition itself (not prerequisites, which need the
    /// other flags: see [`check_prerequisites`]).
    pub fn check(&mut self) -> Result<(), Error> {
        check_key(&self.key).map_err(|m| Error::bad_input("input.key", m))?;
        if self.description.chars().count() > 1000 {
            return Err(Error::bad_input(
                "input.description",
                "description must be at most 1000 characters",
            ));
        }
        if self.variants.is_empty() {
            return Err(Error::bad_input(
                "input.variants",
                "a flag needs at least one variant",
            ));
        }
        let mut names = HashSet::new();
        for (i, v) in self.variants.iter_mut().enumerate() {
            let field = format!("input.variants[{i}]");
            check_name(&v.name).map_err(|m| Error::bad_input(&field, m))?;
            if !names.insert(v.name.clone()) {
                return Err(Error::bad_input(
                    &field,
                    format!("variant `{}` is named twice", v.name),
                ));
            }
            v.value = check_value(self.kind, &v.value)
                .map_err(|m| Error::bad_input(format!("{field}.value"), m))?;
        }
        if self.variant(&self.off_variant).is_none() {
            return Err(Error::bad_input(
                "input.offVariant",
                format!(
                    "offVariant `{}` is not one of the variants",
                    self.off_variant
                ),
            ));
        }
        if let Some(s) = &self.salt
            && (s.is_empty() || s.len() > 100)
        {
            return Err(Error::bad_input(
                "input.salt",
                "salt must be 1 to 100 characters",
            ));
        }
        for (env, t) in &self.environments {
            check_environment(env).map_err(|m| Error::bad_input("input.environment", m))?;
            self.check_targeting(t)?;
        }
        Ok(())
    }

    fn check_targeting(&self, t: &Targeting) -> Result<(), Error> {
        if let Some(d) = &t.default_variant
            && self.variant(d).is_none()
        {
            return Err(Error::bad_input(
                "input.defaultVariant",
                format!("defaultVariant `{d}` is not a variant of `{}`", self.key),
            ));
        }
        for (i, r) in t.rules.iter().enumerate() {
            let field = format!("input.rules[{i}]");
            if self.variant(&r.variant).is_none() {
                return Err(Error::bad_input(
                    format!("{field}.variant"),
                    format!("variant `{}` is not a variant of `{}`", r.variant, self.key),
                ));
            }
            if let Some(p) = r.percentage {
                check_percentage(p)
                    .map_err(|m| Error::bad_input(format!("{field}.percentage"), m))?;
            }
            for (j, c) in r.constraints.iter().enumerate() {
                check_constraint(c)
                    .map_err(|m| Error::bad_input(format!("{field}.constraints[{j}]"), m))?;
            }
        }
        Ok(())
    }
}

/// Flag keys: 1 to 100 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn check_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= 100
        && key.as_bytes()[0].is_ascii_alphanumeric()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "flag key `{key}` must be 1 to 100 of lowercase letters, digits, '.', '_' and '-', starting with a letter or digit"
        ))
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "variant name `{name}` must be 1 to 64 of letters, digits, '.', '_' and '-'"
        ))
    }
}

/// Environments are DNS labels (`dev`, `stage`, `prod`, …).
pub fn check_environment(env: &str) -> Result<(), String> {
    if crate::ids::Label::parse(env).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "environment `{env}` must be a DNS label: 1 to 63 lowercase letters, digits and '-'"
        ))
    }
}

pub fn check_percentage(p: f64) -> Result<(), String> {
    if p.is_finite() && (0.0..=100.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("percentage {p} is outside 0 to 100"))
    }
}

/// Checks `value` against `kind`; a JSON variant may be given as a string
/// holding JSON, which is parsed. Returns the value to store.
fn check_value(kind: Kind, value: &Value) -> Result<Value, String> {
    let ok = match kind {
        Kind::Boolean => value.is_boolean(),
        Kind::String => value.is_string(),
        Kind::Number => value.is_number(),
        Kind::Json => {
            if let Value::String(s) = value {
                return serde_json::from_str::<Value>(s)
                    .map_err(|e| format!("a JSON variant must hold valid JSON: {e}"));
            }
            true
        }
    };
    if ok {
        Ok(value.clone())
    } else {
        Err(format!(
            "value {value} is not a {kind:?} as the flag's kind says"
        ))
    }
}

fn check_constraint(c: &Constraint) -> Result<(), String> {
    if c.attribute.is_empty() || c.attribute.len() > 64 {
        return Err("attribute must be 1 to 64 characters".into());
    }
    match c.operator {
        Operator::In | Operator::NotIn | Operator::Prefix => {
            if c.values.is_empty() {
                return Err(format!("{:?} needs at least one value", c.operator));
            }
        }
        Operator::Lt | Operator::Lte | Operator::Gt | Operator::Gte => match c.values.as_slice() {
            [v] if v.trim().parse::<f64>().is_ok_and(f64::is_finite) => {}
            _ => return Err(format!("{:?} needs exactly one number", c.operator)),
        },
        Operator::Semver => match c.values.as_slice() {
            [v] => {
                semver::VersionReq::parse(v)
                    .map_err(|e| format!("`{v}` is not a semver range: {e}"))?;
            }
            _ => return Err("SEMVER needs exactly one semver range".into()),
        },
    }
    Ok(())
}

/// Checks that each prerequisite names a known flag and one of its
/// variants, and that no chain of prerequisites leads back to `def`.
/// `others` looks a flag up by key.
pub fn check_prerequisites(
    def: &FlagDef,
    others: &dyn Fn(&str) -> Option<FlagDef>,
) -> Result<(), Error> {
    for t in def.environments.values() {
        for (i, r) in t.rules.iter().enumerate() {
            for (j, p) in r.prerequisites.iter().enumerate() {
                let field = format!("input.rules[{i}].prerequisites[{j}]");
                let other = if p.flag_key == def.key {
                    Some(def.clone())
                } else {
                    others(&p.flag_key)
                };
                let Some(other) = other else {
                    return Err(Error::bad_input(
                        field,
                        format!("prerequisite flag `{}` does not exist", p.flag_key),
                    ));
                };
                if other.variant(&p.variant).is_none() {
                    return Err(Error::bad_input(
                        field,
                        format!(
                            "prerequisite flag `{}` has no variant `{}`",
                            p.flag_key, p.variant
                        ),
                    ));
                }
            }
        }
    }
    // Depth-first from `def` over prerequisite edges (any environment).
    let mut stack: Vec<(String, Vec<String>)> = vec![(def.key.clone(), vec![def.key.clone()])];
    let mut seen = HashSet::new();
    while let Some((key, path)) = stack.pop() {
        let flag = if key == def.key {
            Some(def.clone())
        } else {
            others(&key)
        };
        let Some(flag) = flag else { continue };
        for t in flag.environments.values() {
            for r in &t.rules {
                for p in &r.prerequisites {
                    if p.flag_key == def.key {
                        let mut cycle = path.clone();
                        cycle.push(def.key.clone());
                        return Err(Error::bad_input(
                            "input.rules",
                            format!("prerequisites form a cycle: {}", cycle.join(" → ")),
                        ));
                    }
                    if seen.insert(p.flag_key.clone()) {
                        let mut next = path.clone();
                        next.push(p.flag_key.clone());
                        stack.push((p.flag_key.clone(), next));
                    }
                }
            }
        }
    }
    Ok(())
}
