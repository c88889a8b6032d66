//! Flag evaluation on a compiled snapshot: rule order, each operator,
//! splits, prerequisites, the kill switch and rollout overlays.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;
use shared::flags::bucket::{bucket, threshold};
use shared::flags::def::check_prerequisites;
use shared::flags::eval::Context;
use shared::flags::{
    Cohort, Constraint, Engine, FlagDef, Kind, Operator, Prerequisite, Reason, RolloutPlan,
    RolloutState, Rule, Snapshot, Stage, StoredFlag, Targeting, TenantAttrs, Variant,
};
use uuid::Uuid;

fn tenant(plan: &str, region: &str, version: i64) -> TenantAttrs {
    TenantAttrs {
        id: Uuid::now_v7(),
        plan: plan.into(),
        region: region.into(),
        cell: format!("{region}-a"),
        version,
    }
}

fn flag(key: &str, env: Option<Targeting>) -> FlagDef {
    let mut environments = BTreeMap::new();
    if let Some(t) = env {
        environments.insert("prod".to_owned(), t);
    }
    FlagDef {
        key: key.into(),
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
        environments,
    }
}

fn rule(variant: &str) -> Rule {
    Rule {
        variant: variant.into(),
        tenant_ids: vec![],
        constraints: vec![],
        prerequisites: vec![],
        percentage: None,
    }
}

fn on_with(rules: Vec<Rule>) -> Targeting {
    Targeting {
        enabled: true,
        killed: false,
        rules,
        default_variant: None,
    }
}

fn engine(flags: Vec<FlagDef>, rollouts: Vec<RolloutPlan>, tenants: &[TenantAttrs]) -> Engine {
    Engine::compile(&Snapshot {
        flags: flags
            .into_iter()
            .map(|def| StoredFlag { def, version: 1 })
            .collect(),
        rollouts,
        tenants: tenants.to_vec(),
    })
}

fn eval(e: &Engine, t: &TenantAttrs, key: &str) -> (Option<String>, Reason) {
    let r = e.evaluate(t.id, key, "prod", &Context::new()).unwrap();
    (r.variant.map(str::to_owned), r.reason)
}

#[test]
fn a_new_flag_is_off_everywhere() {
    let t = tenant("pro", "eu-west-1", 1);
    let e = engine(vec![flag("f", None)], vec![], std::slice::from_ref(&t));
    let r = e.evaluate(t.id, "f", "prod", &Context::new()).unwrap();
    assert_eq!(*r.value, json!(false));
    assert_eq!(r.reason, Reason::Disabled);
    assert_eq!(r.error_code, None);
    let missing = e.evaluate(t.id, "nope", "prod", &Context::new()).unwrap();
    assert_eq!(missing.reason, Reason::Error);
    assert!(
        e.evaluate(Uuid::now_v7(), "f", "prod", &Context::new())
            .is_err()
    );
}

#[test]
fn rules_match_in_order_and_fall_back_to_the_default() {
    let a = tenant("pro", "eu-west-1", 3);
    let b = tenant("free", "us-east-1", 1);
    let mut listed = rule("on");
    listed.tenant_ids = vec![a.id];
    let mut t = on_with(vec![listed]);
    t.default_variant = Some("off".into());
    let e = engine(vec![flag("f", Some(t))], vec![], &[a.clone(), b.clone()]);
    assert_eq!(
        eval(&e, &a, "f"),
        (Some("on".into()), Reason::TargetingMatch)
    );
    assert_eq!(eval(&e, &b, "f"), (Some("off".into()), Reason::Default));
}

#[test]
fn every_operator() {
    let pro = tenant("pro", "eu-west-1", 12);
    let free = tenant("free", "us-east-1", 3);
    let cases: Vec<(Operator, &str, Vec<&str>, bool, bool)> = vec![
        (Operator::In, "plan", vec!["pro", "enterprise"], true, false),
        (Operator::NotIn, "plan", vec!["pro"], false, true),
        (Operator::Gt, "version", vec!["10"], true, false),
        (Operator::Gte, "version", vec!["3"], true, true),
        (Operator::Lt, "version", vec!["3"], false, false),
        (Operator::Lte, "version", vec!["3"], false, true),
        (
            Operator::Semver,
            "version",
            vec![">=10.0.0, <13"],
            true,
            false,
        ),
        (Operator::Prefix, "region", vec!["eu-"], true, false),
    ];
    for (op, attr, values, want_pro, want_free) in cases {
        let mut r = rule("on");
        r.constraints = vec![Constraint {
            attribute: attr.into(),
            operator: op,
            values: values.iter().map(|v| v.to_string()).collect(),
        }];
        let e = engine(
            vec![flag("f", Some(on_with(vec![r])))],
            vec![],
            &[pro.clone(), free.clone()],
        );
        assert_eq!(
            eval(&e, &pro, "f").0.as_deref() == Some("on"),
            want_pro,
            "{op:?} on pro"
        );
        assert_eq!(
            eval(&e, &free, "f").0.as_deref() == Some("on"),
            want_free,
            "{op:?} on free"
        );
    }
}

#[test]
fn custom_attributes_come_from_the_context() {
    let t = tenant("pro", "eu-west-1", 1);
    let mut r = rule("on");
    r.constraints = vec![Constraint {
        attribute: "appVersion".into(),
        operator: Operator::Semver,
        values: vec!["^2.1".into()],
    }];
    let e = engine(
        vec![flag("f", Some(on_with(vec![r])))],
        vec![],
        std::slice::from_ref(&t),
    );
    let ctx: Context = HashMap::from([("appVersion".to_owned(), json!("2.3.0"))]);
    assert_eq!(
        e.evaluate(t.id, "f", "prod", &ctx).unwrap().reason,
        Reason::TargetingMatch
    );
    let old: Context = HashMap::from([("appVersion".to_owned(), json!("1.9.0"))]);
    assert_eq!(
        e.evaluate(t.id, "f", "prod", &old).unwrap().reason,
        Reason::Default
    );
}

#[test]
fn a_split_follows_the_murmur_bucket() {
    let tenants: Vec<TenantAttrs> = (0..400).map(|_| tenant("pro", "eu-west-1", 1)).collect();
    let mut r = rule("on");
    r.percentage = Some(25.0);
    let e = engine(
        vec![flag("split", Some(on_with(vec![r])))],
        vec![],
        &tenants,
    );
    for t in &tenants {
        let inside = bucket("split", t.id) < threshold(25.0);
        let got = eval(&e, t, "split");
        if inside {
            assert_eq!(got, (Some("on".into()), Reason::Split));
        } else {
            assert_eq!(got, (Some("off".into()), Reason::Default));
        }
    }
}

#[test]
fn prerequisites_gate_a_rule_and_cycles_are_refused() {
    let t = tenant("pro", "eu-west-1", 1);
    let parent = flag("parent", Some(on_with(vec![rule("on")])));
    let mut r = rule("on");
    r.prerequisites = vec![Prerequisite {
        flag_key: "parent".into(),
        variant: "on".into(),
    }];
    let child = flag("child", Some(on_with(vec![r])));
    let e = engine(
        vec![parent.clone(), child.clone()],
        vec![],
        std::slice::from_ref(&t),
    );
    assert_eq!(
        eval(&e, &t, "child"),
        (Some("on".into()), Reason::TargetingMatch)
    );
    let parent_off = flag("parent", None);
    let e = engine(
        vec![parent_off, child.clone()],
        vec![],
        std::slice::from_ref(&t),
    );
    assert_eq!(eval(&e, &t, "child"), (Some("off".into()), Reason::Default));

    // parent → child → parent is a cycle.
    let mut back = rule("on");
    back.prerequisites = vec![Prerequisite {
        flag_key: "child".into(),
        variant: "on".into(),
    }];
    let parent_cyclic = flag("parent", Some(on_with(vec![back])));
    let others = |k: &str| (k == "child").then(|| child.clone());
    let err = check_prerequisites(&parent_cyclic, &others).unwrap_err();
    assert!(err.to_string().contains("cycle"), "{err}");
    assert!(check_prerequisites(&parent, &others).is_ok());
}

#[test]
fn the_kill_switch_and_archiving_win_over_everything() {
    let t = tenant("pro", "eu-west-1", 1);
    let mut killed = on_with(vec![rule("on")]);
    killed.killed = true;
    let e = engine(
        vec![flag("f", Some(killed))],
        vec![],
        std::slice::from_ref(&t),
    );
    assert_eq!(eval(&e, &t, "f"), (Some("off".into()), Reason::Disabled));
    let mut archived = flag("g", Some(on_with(vec![rule("on")])));
    archived.archived = true;
    let e = engine(vec![archived], vec![], std::slice::from_ref(&t));
    assert_eq!(eval(&e, &t, "g"), (Some("off".into()), Reason::Disabled));
}

fn plan(
    stages: Vec<Cohort>,
    stage: usize,
    state: RolloutState,
    requires: Option<&str>,
) -> RolloutPlan {
    RolloutPlan {
        id: Uuid::now_v7(),
        flag_key: "f".into(),
        environment: "prod".into(),
        variant: "on".into(),
        stages: stages
            .into_iter()
            .enumerate()
            .map(|(i, cohort)| Stage {
                name: format!("s{i}"),
                cohort,
                soak_seconds: 0,
                gates: Default::default(),
            })
            .collect(),
        requires_tenant_version: requires.map(Into::into),
        state,
        stage,
    }
}

#[test]
fn a_rollout_exposes_its_stages_so_far_and_only_admitted_versions() {
    let canary = tenant("pro", "eu-west-1", 5);
    let other = tenant("free", "us-east-1", 5);
    let old = tenant("pro", "eu-west-1", 1);
    let late = tenant("free", "eu-west-1", 7);
    let all = [canary.clone(), other.clone(), old.clone(), late.clone()];
    let stages = vec![
        Cohort {
            tenant_ids: vec![canary.id, old.id],
            ..Default::default()
        },
        Cohort {
            regions: vec!["us-east-1".into()],
            ..Default::default()
        },
        Cohort {
            percentage: Some(100.0),
            ..Default::default()
        },
    ];
    let f = flag("f", None);
    let e = engine(
        vec![f.clone()],
        vec![plan(stages.clone(), 0, RolloutState::Running, Some(">=2"))],
        &all,
    );
    assert_eq!(
        eval(&e, &canary, "f"),
        (Some("on".into()), Reason::TargetingMatch)
    );
    assert_eq!(
        eval(&e, &other, "f"),
        (Some("off".into()), Reason::Disabled)
    );
    assert_eq!(
        eval(&e, &old, "f"),
        (Some("off".into()), Reason::Disabled),
        "below the required version"
    );
    assert_eq!(e.rollout_exposure("f", "prod"), (1, 1));

    let e = engine(
        vec![f.clone()],
        vec![plan(stages.clone(), 1, RolloutState::Paused, Some(">=2"))],
        &all,
    );
    assert_eq!(eval(&e, &canary, "f").0.as_deref(), Some("on"));
    assert_eq!(eval(&e, &other, "f").0.as_deref(), Some("on"));
    assert_eq!(e.rollout_exposure("f", "prod"), (2, 1));

    let e = engine(
        vec![f.clone()],
        vec![plan(stages.clone(), 2, RolloutState::Running, None)],
        &all,
    );
    assert_eq!(eval(&e, &late, "f"), (Some("on".into()), Reason::Split));
    assert_eq!(
        eval(&e, &old, "f"),
        (Some("on".into()), Reason::TargetingMatch)
    );

    // Rolled back: exactly the exposure from before.
    let e = engine(
        vec![f],
        vec![plan(stages, 2, RolloutState::RolledBack, None)],
        &all,
    );
    for t in &all {
        assert_eq!(eval(&e, t, "f"), (Some("off".into()), Reason::Disabled));
    }
}

#[test]
fn definitions_are_checked() {
    let mut ok = flag("ok", Some(on_with(vec![rule("on")])));
    assert!(ok.check().is_ok());
    let mut bad_key = flag("Not A Key", None);
    assert!(bad_key.check().is_err());
    let mut bad_off = flag("f", None);
    bad_off.off_variant = "nope".into();
    assert!(bad_off.check().is_err());
    let mut bad_pct = rule("on");
    bad_pct.percentage = Some(100.5);
    assert!(flag("f", Some(on_with(vec![bad_pct]))).check().is_err());
    let mut bad_semver = rule("on");
    bad_semver.constraints = vec![Constraint {
        attribute: "version".into(),
        operator: Operator::Semver,
        values: vec!["not a range".into()],
    }];
    assert!(flag("f", Some(on_with(vec![bad_semver]))).check().is_err());
    let mut json_flag = flag("j", None);
    json_flag.kind = Kind::Json;
    json_flag.variants = vec![
        Variant {
            name: "on".into(),
            value: json!("{\"a\": 1}"),
        },
        Variant {
            name: "off".into(),
            value: json!({}),
        },
    ];
    json_flag.check().unwrap();
    assert_eq!(
        json_flag.variants[0].value,
        json!({ "a": 1 }),
        "a JSON string is parsed"
    );
    json_flag.variants[0].value = json!("{not json");
    assert!(json_flag.check().is_err());
    let mut wrong_kind = flag("w", None);
    wrong_kind.variants[0].value = json!("yes");
    assert!(wrong_kind.check().is_err());
}
