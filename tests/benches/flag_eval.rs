//! Flag evaluation in the cell's engine against Unleash's Rust engine
//! (`unleash-yggdrasil`) on equivalent flags, in one criterion run:
//! no rules; one constraint; five rules ending in a percentage split; and
//! every flag of a tenant (100 flags).
//!
//! cargo bench -p e2e --bench flag_eval
//!
//! Our side starts from the tenant id (its attributes are looked up in the
//! snapshot, as the cell does); Yggdrasil gets a ready-made context. Single
//! flags use Yggdrasil's cheapest call (`is_enabled`, a bool) against our
//! full answer (value, variant, reason).

// async-graphql's merged schema is deep: the release build needs more room.
#![recursion_limit = "256"]

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use shared::flags::eval::Context as FlagContext;
use shared::flags::{
    Constraint, Engine, FlagDef, Kind, Operator, Rule, Snapshot, StoredFlag, Targeting,
    TenantAttrs, Variant,
};
use unleash_types::client_features::{ClientFeatures, Context};
use unleash_yggdrasil::{EngineState, UpdateMessage};
use uuid::Uuid;

fn constraint(attribute: &str, operator: Operator, values: &[&str]) -> Constraint {
    Constraint {
        attribute: attribute.into(),
        operator,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn rule(constraints: Vec<Constraint>) -> Rule {
    Rule {
        variant: "on".into(),
        tenant_ids: vec![],
        constraints,
        prerequisites: vec![],
        percentage: None,
    }
}

/// The three shapes, ours and Unleash's.
fn shape(name: &str, kind: usize, others: &[Uuid]) -> (FlagDef, Value) {
    let (rules, default, strategies) = match kind {
        0 => (
            vec![],
            "on",
            json!([{ "name": "default", "parameters": {} }]),
        ),
        1 => (
            vec![rule(vec![constraint("plan", Operator::In, &["pro"])])],
            "off",
            json!([{ "name": "default", "parameters": {}, "constraints": [
                { "contextName": "plan", "operator": "IN", "values": ["pro"] }] }]),
        ),
        _ => {
            let mut listed = rule(vec![]);
            listed.tenant_ids = others.to_vec();
            let mut split = rule(vec![]);
            split.percentage = Some(50.0);
            let ids: Vec<String> = others.iter().map(|u| u.to_string()).collect();
            (
                vec![
                    listed,
                    rule(vec![constraint("region", Operator::Prefix, &["ap-"])]),
                    rule(vec![constraint("version", Operator::Gt, &["100"])]),
                    rule(vec![constraint("plan", Operator::In, &["enterprise"])]),
                    split,
                ],
                "off",
                json!([
                    { "name": "userWithId", "parameters": { "userIds": ids.join(",") } },
                    { "name": "default", "parameters": {}, "constraints": [
                        { "contextName": "region", "operator": "STR_STARTS_WITH", "values": ["ap-"] }] },
                    { "name": "default", "parameters": {}, "constraints": [
                        { "contextName": "version", "operator": "NUM_GT", "value": "100" }] },
                    { "name": "default", "parameters": {}, "constraints": [
                        { "contextName": "plan", "operator": "IN", "values": ["enterprise"] }] },
                    { "name": "flexibleRollout", "parameters": { "rollout": "50", "stickiness": "userId", "groupId": name } }
                ]),
            )
        }
    };
    let def = FlagDef {
        key: name.into(),
        description: String::new(),
        kind: Kind::Boolean,
        variants: vec![
            Variant {
                name: "on".into(),
                value: json!(true),
            },
            Variant {
                name: "off".into(),
                value: json!(false),
            },
        ],
        off_variant: "off".into(),
        salt: None,
        archived: false,
        environments: BTreeMap::from([(
            "prod".to_owned(),
            Targeting {
                enabled: true,
                killed: false,
                rules,
                default_variant: Some(default.into()),
            },
        )]),
    };
    let unleash =
        json!({ "name": name, "enabled": true, "strategies": strategies, "variants": [] });
    (def, unleash)
}

fn engines(
    flags: &[(String, usize)],
    tenant: &TenantAttrs,
    others: &[Uuid],
) -> (Engine, EngineState) {
    let (defs, toggles): (Vec<_>, Vec<_>) = flags.iter().map(|(n, k)| shape(n, *k, others)).unzip();
    let mut tenants = vec![tenant.clone()];
    tenants.extend(others.iter().map(|id| TenantAttrs {
        id: *id,
        ..tenant.clone()
    }));
    let ours = Engine::compile(&Snapshot {
        flags: defs
            .into_iter()
            .map(|def| StoredFlag { def, version: 1 })
            .collect(),
        rollouts: vec![],
        tenants,
    });
    let features: ClientFeatures =
        serde_json::from_value(json!({ "version": 2, "features": toggles })).unwrap();
    let theirs = EngineState::default();
    let warnings = theirs.take_state(UpdateMessage::FullResponse(features));
    assert!(warnings.is_none(), "{warnings:?}");
    (ours, theirs)
}

fn bench(c: &mut Criterion) {
    let tenant = TenantAttrs {
        id: Uuid::now_v7(),
        plan: "pro".into(),
        region: "eu-west-1".into(),
        cell: "eu-west-1-a".into(),
        version: 7,
    };
    let others: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    let ctx = Context {
        user_id: Some(tenant.id.to_string()),
        environment: Some("prod".into()),
        properties: Some(HashMap::from([
            ("plan".to_owned(), tenant.plan.clone()),
            ("region".to_owned(), tenant.region.clone()),
            ("cell".to_owned(), tenant.cell.clone()),
            ("version".to_owned(), tenant.version.to_string()),
        ])),
        ..Default::default()
    };
    let empty = FlagContext::new();
    let mut flags: Vec<(String, usize)> = vec![
        ("no-rules".into(), 0),
        ("one-constraint".into(), 1),
        ("five-rules".into(), 2),
    ];
    flags.extend((0..97).map(|i| (format!("flag-{i}"), i % 3)));
    let (ours, theirs) = engines(&flags, &tenant, &others);

    // Both engines agree on every flag whose answer does not hang on the
    // split (Unleash buckets `murmur3 % 100 + 1`, we `% 100000`).
    for (name, _) in flags.iter().filter(|(_, k)| *k < 2) {
        let a = *ours
            .evaluate(tenant.id, name, "prod", &empty)
            .unwrap()
            .value
            == json!(true);
        assert_eq!(a, theirs.is_enabled(name, &ctx, &None), "{name}");
    }

    for name in ["no-rules", "one-constraint", "five-rules"] {
        let mut g = c.benchmark_group(name);
        g.bench_function("cell", |b| {
            b.iter(|| ours.evaluate(black_box(tenant.id), black_box(name), "prod", &empty))
        });
        g.bench_function("yggdrasil", |b| {
            b.iter(|| theirs.is_enabled(black_box(name), black_box(&ctx), &None))
        });
        g.finish();
    }
    let mut g = c.benchmark_group("all-flags-100");
    g.bench_function("cell", |b| {
        b.iter(|| ours.evaluate_all(black_box(tenant.id), "prod", &empty))
    });
    g.bench_function("yggdrasil", |b| {
        b.iter(|| theirs.resolve_all(black_box(&ctx), &None))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
