//! A flag's definition: kind, variants, off variant and per-environment
//! targeting, with the checks every write must pass.

use std::collections::{BTreeMap, HashSet};

use async_graphql::{Enum, InputObject, SimpleObject};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::Error;

/// The type of every variant value of a flag.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "FlagKind")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    /// `true` or `false`.
    Boolean,
    /// A JSON string.
    String,
    /// A JSON number.
    Number,
    /// Any JSON value; given as a string, the string is parsed as JSON.
    Json,
}

/// One value a flag can serve, by name.
#[derive(SimpleObject, InputObject, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[graphql(name = "FlagVariant", input_name = "FlagVariantInput")]
pub struct Variant {
    /// Unique within the flag: 1 to 64 of letters, digits, '.', '_' and '-'.
    pub name: String,
    /// The value served, of the flag's kind.
    pub value: Value,
}

/// How a constraint compares a tenant attribute with its `values`. A tenant
/// without the attribute matches only NOT_IN.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "ConstraintOperator")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operator {
    /// The attribute equals one of `values`.
    In,
    /// The attribute equals none of `values`.
    NotIn,
    /// The attribute, as a number, is below `values[0]`.
    Lt,
    /// The attribute, as a number, is at most `values[0]`.
    Lte,
    /// The attribute, as a number, is above `values[0]`.
    Gt,
    /// The attribute, as a number, is at least `values[0]`.
    Gte,
    /// The attribute, as a semver version, matches the range `values[0]`
    /// (e.g. `>=1.2, <2`); the integer `version` attribute reads as `N.0.0`.
    Semver,
    /// The attribute starts with one of `values`.
    Prefix,
}

/// A condition on a tenant attribute: `plan`, `region`, `cell`, `version`,
/// `tenantId`, or a custom attribute of the evaluation context.
#[derive(SimpleObject, InputObject, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[graphql(name = "FlagConstraint", input_name = "FlagConstraintInput")]
pub struct Constraint {
    /// The attribute's name, 1 to 64 characters.
    pub attribute: String,
    /// How the attribute is compared with `values`.
    pub operator: Operator,
    /// The operands: one or more for IN, NOT_IN and PREFIX; exactly one
    /// number for LT, LTE, GT and GTE; exactly one range for SEMVER.
    pub values: Vec<String>,
}

/// Flag `flag_key` must serve `variant` (in the same environment).
#[derive(SimpleObject, InputObject, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "FlagPrerequisite", input_name = "FlagPrerequisiteInput")]
#[serde(rename_all = "camelCase")]
pub struct Prerequisite {
    /// An existing flag; prerequisites must not form a cycle.
    pub flag_key: String,
    /// One of that flag's variants.
    pub variant: String,
}

/// A targeting rule: it matches a tenant when every condition it states
/// holds (tenant list, constraints, prerequisites, percentage split), and
/// then serves `variant`. Rules are evaluated in order.
#[derive(SimpleObject, InputObject, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[graphql(name = "FlagRule", input_name = "FlagRuleInput")]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// The variant served when the rule matches; one of the flag's variants.
    pub variant: String,
    /// Only these tenants; empty: any tenant.
    #[graphql(default)]
    #[serde(default)]
    pub tenant_ids: Vec<Uuid>,
    /// Conditions on tenant attributes, all of which must hold.
    #[graphql(default)]
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    /// Other flags that must serve the given variants, all of them.
    #[graphql(default)]
    #[serde(default)]
    pub prerequisites: Vec<Prerequisite>,
    /// The share of otherwise matching tenants the rule serves, by sticky
    /// bucket: 0 to 100, in steps of 0.001; absent: all of them.
    pub percentage: Option<f64>,
}

/// A flag's state in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Targeting {
    /// Off: every tenant gets the off variant (a running rollout still
    /// serves its cohorts).
    pub enabled: bool,
    /// Set by the kill switch: serves the off variant whatever else says.
    #[serde(default)]
    pub killed: bool,
    /// Evaluated in order; the first that matches decides.
    pub rules: Vec<Rule>,
    /// Served when no rule matches; the off variant when unset.
    pub default_variant: Option<String>,
}

/// A flag as the global tier owns it and every cell holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagDef {
    /// 1 to 100 of `a-z 0-9 . _ -`, starting with a letter or digit.
    pub key: String,
    /// Free text for people, at most 1000 characters.
    pub description: String,
    /// The type of every variant's value.
    pub kind: Kind,
    /// At least one, with distinct names.
    pub variants: Vec<Variant>,
    /// The variant served when the flag is off, killed, archived or not
    /// targeted in an environment; one of `variants`.
    pub off_variant: String,
    /// Percentage buckets hash `"{salt}:{tenantId}"`; the key when unset.
    /// 1 to 100 characters when set.
    pub salt: Option<String>,
    /// Archived flags serve their off variant everywhere.
    pub archived: bool,
    /// Environments with targeting; any other environment is off.
    pub environments: BTreeMap<String, Targeting>,
}

impl FlagDef {
    /// The salt percentage buckets hash with: `salt`, or the key when unset.
    pub fn salt(&self) -> &str {
        self.salt.as_deref().unwrap_or(&self.key)
    }

    /// The variant called `name`, if the flag has one.
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
    /// other flags: see [`check_prerequisites`]). Parses JSON variants given
    /// as strings in place. Errors are BAD_USER_INPUT naming the `input.…`
    /// field at fault.
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
    let ok = !env.is_empty()
        && env.len() <= 63
        && env
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !env.starts_with('-')
        && !env.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "environment `{env}` must be a DNS label: 1 to 63 lowercase letters, digits and '-'"
        ))
    }
}

/// Percentages are finite and 0 to 100; the error is the message for the user.
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
/// `others` looks a flag up by key. Errors are BAD_USER_INPUT.
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
