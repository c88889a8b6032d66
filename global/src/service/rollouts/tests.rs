//! The pure parts of rollouts: validation, cohorts, transitions, gates.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use shared::Error;
use shared::flags::report::Ack;
use shared::flags::{Cohort, Gates, Operator, RolloutPlan, RolloutState, Stage};
use uuid::Uuid;

use super::*;
use crate::entity::tenant;

fn stage(name: &str, soak_seconds: i64, gates: Gates) -> Stage {
    Stage {
        name: name.into(),
        cohort: Cohort::default(),
        soak_seconds,
        gates,
    }
}

fn new_rollout(stages: Vec<Stage>) -> NewRollout {
    NewRollout {
        flag_key: "checkout".into(),
        environment: "prod".into(),
        variant: "on".into(),
        stages,
        requires_tenant_version: None,
        allow_empty_cohort: false,
        ack_deadline_seconds: 30,
        start_at: None,
    }
}

/// A RUNNING rollout at stage 0 of `stages`, started `age` ago, targeting
/// cells `a` and `b`, none of which acknowledged yet.
fn running(stages: Vec<Stage>, age: Duration) -> Rollout {
    let now = Utc::now();
    Rollout {
        plan: RolloutPlan {
            id: Uuid::now_v7(),
            flag_key: "checkout".into(),
            environment: "prod".into(),
            variant: "on".into(),
            stages,
            requires_tenant_version: None,
            state: RolloutState::Running,
            stage: 0,
        },
        start_at: None,
        ack_deadline_seconds: 30,
        stage_started_at: now - age,
        target_cells: vec!["a".into(), "b".into()],
        cells: BTreeMap::new(),
        health: Health::default(),
        stuck: None,
        history: vec![],
        created_by: "sre".into(),
        created_at: now - age,
    }
}

fn ack(d: &Rollout, cell: &str, exposed: i64) -> Ack {
    Ack {
        rollout_id: d.plan.id,
        cell: cell.into(),
        stage: d.plan.stage,
        state: d.plan.state,
        exposed_tenants: exposed,
        excluded_tenants: 0,
        tenants: 10,
    }
}

fn ack_all(d: &mut Rollout) {
    for cell in d.target_cells.clone() {
        let a = ack(d, &cell, 1);
        record_ack(d, &a, 1 << 41);
    }
}

fn events(c: &Change) -> Vec<&str> {
    c.entries.iter().map(|e| e.event.as_str()).collect()
}

fn bad_field(e: Error) -> String {
    match e {
        Error::BadInput { field, .. } => field.unwrap_or_default(),
        other => panic!("expected BAD_USER_INPUT, got {other:?}"),
    }
}

fn tenant(cell: &str, region: &str, plan: &str, version: i64) -> tenant::Model {
    let now = Utc::now();
    tenant::Model {
        id: Uuid::now_v7(),
        slug: "acme".into(),
        region: region.into(),
        cell_id: cell.into(),
        status: "ACTIVE".into(),
        version,
        created_at: now,
        updated_at: now,
        purge_at: None,
        plan: plan.into(),
        plan_version: 1,
    }
}

// ---- validation ----

#[test]
fn a_valid_rollout_passes_and_its_version_range_is_parsed() {
    let mut n = new_rollout(vec![
        stage("canary", 0, Gates::default()),
        stage("all", 60, Gates::default()),
    ]);
    assert!(check_stages(&n).unwrap().is_none());
    n.requires_tenant_version = Some(">=2".into());
    let req = check_stages(&n).unwrap().expect("a range");
    assert!(req.matches(&semver::Version::new(2, 0, 0)));
    assert!(!req.matches(&semver::Version::new(1, 0, 0)));
}

#[test]
fn stage_count_deadline_and_environment_are_checked() {
    assert_eq!(
        bad_field(check_stages(&new_rollout(vec![])).unwrap_err()),
        "input.stages"
    );
    let many = (0..21)
        .map(|i| stage(&format!("s{i}"), 0, Gates::default()))
        .collect();
    assert_eq!(
        bad_field(check_stages(&new_rollout(many)).unwrap_err()),
        "input.stages"
    );
    let mut n = new_rollout(vec![stage("canary", 0, Gates::default())]);
    n.ack_deadline_seconds = 0;
    assert_eq!(
        bad_field(check_stages(&n).unwrap_err()),
        "input.ackDeadlineSeconds"
    );
    let mut n = new_rollout(vec![stage("canary", 0, Gates::default())]);
    n.environment = "Prod".into();
    assert_eq!(
        bad_field(check_stages(&n).unwrap_err()),
        "input.environment"
    );
    let mut n = new_rollout(vec![stage("canary", 0, Gates::default())]);
    n.requires_tenant_version = Some("not a range".into());
    assert_eq!(
        bad_field(check_stages(&n).unwrap_err()),
        "input.requiresTenantVersion"
    );
}

#[test]
fn each_stage_is_checked_and_named_by_its_index() {
    let check = |s: Stage| {
        bad_field(
            check_stages(&new_rollout(vec![stage("canary", 0, Gates::default()), s])).unwrap_err(),
        )
    };
    assert_eq!(
        check(stage(" ", 0, Gates::default())),
        "input.stages[1].name"
    );
    assert_eq!(
        check(stage(&"x".repeat(65), 0, Gates::default())),
        "input.stages[1].name"
    );
    assert_eq!(
        check(stage("all", -1, Gates::default())),
        "input.stages[1].soakSeconds"
    );
    let gates = Gates {
        max_error_rate: Some(1.5),
        min_requests: None,
    };
    assert_eq!(
        check(stage("all", 0, gates)),
        "input.stages[1].gates.maxErrorRate"
    );
    let gates = Gates {
        max_error_rate: Some(f64::NAN),
        min_requests: None,
    };
    assert_eq!(
        check(stage("all", 0, gates)),
        "input.stages[1].gates.maxErrorRate"
    );
    let gates = Gates {
        max_error_rate: None,
        min_requests: Some(-1),
    };
    assert_eq!(
        check(stage("all", 0, gates)),
        "input.stages[1].gates.minRequests"
    );
    let mut s = stage("all", 0, Gates::default());
    s.cohort.percentage = Some(101.0);
    assert_eq!(check(s), "input.stages[1].cohort.percentage");
}

#[test]
fn stage_percentages_must_not_go_down() {
    let mut a = stage("canary", 0, Gates::default());
    a.cohort.percentage = Some(10.0);
    let mut b = stage("half", 0, Gates::default());
    b.cohort.percentage = Some(5.0);
    let e = check_stages(&new_rollout(vec![a.clone(), b])).unwrap_err();
    assert!(
        e.to_string().contains("must not go down: 5 after 10"),
        "{e}"
    );
    let mut c = stage("all", 0, Gates::default());
    c.cohort.percentage = Some(10.0);
    assert!(
        check_stages(&new_rollout(vec![a, c])).is_ok(),
        "equal is fine"
    );
}

#[test]
fn a_cohort_matches_when_every_given_dimension_does() {
    let t = tenant("us-1", "us-east-1", "pro", 3);
    let any = Cohort::default();
    assert!(cohort_matches(&any, &t, "salt", None));
    let by_cell = Cohort {
        cell_ids: vec!["us-1".into()],
        ..Default::default()
    };
    assert!(cohort_matches(&by_cell, &t, "salt", None));
    let cell_and_plan = Cohort {
        cell_ids: vec!["us-1".into()],
        plans: vec!["enterprise".into()],
        ..Default::default()
    };
    assert!(
        !cohort_matches(&cell_and_plan, &t, "salt", None),
        "the plan differs"
    );
    let by_region = Cohort {
        regions: vec!["eu-west-1".into()],
        ..Default::default()
    };
    assert!(!cohort_matches(&by_region, &t, "salt", None));
    let by_id = Cohort {
        tenant_ids: vec![t.id],
        ..Default::default()
    };
    assert!(cohort_matches(&by_id, &t, "salt", None));
    let none = Cohort {
        percentage: Some(0.0),
        ..Default::default()
    };
    assert!(!cohort_matches(&none, &t, "salt", None));
    let all = Cohort {
        percentage: Some(100.0),
        ..Default::default()
    };
    assert!(cohort_matches(&all, &t, "salt", None));
    let v2 = semver::VersionReq::parse(">=2").unwrap();
    let v4 = semver::VersionReq::parse(">=4").unwrap();
    assert!(cohort_matches(&any, &t, "salt", Some(&v2)));
    assert!(
        !cohort_matches(&any, &t, "salt", Some(&v4)),
        "tenant version 3 is outside >=4"
    );
}

// ---- transitions ----

#[test]
fn a_pending_rollout_begins_when_due_and_forgets_pending_acks() {
    let mut d = running(vec![stage("canary", 0, Gates::default())], Duration::zero());
    d.plan.state = RolloutState::Pending;
    d.start_at = Some(Utc::now() + Duration::hours(1));
    ack_all(&mut d);
    assert!(!due(&d));
    let c = begin_if_due(&mut d, &["a".into()]);
    assert!(c.entries.is_empty() && !c.plan);
    assert_eq!(d.plan.state, RolloutState::Pending);

    d.start_at = Some(Utc::now() - Duration::seconds(1));
    assert!(due(&d));
    let c = begin_if_due(&mut d, &["a".into(), "c".into()]);
    assert!(c.plan);
    assert_eq!(events(&c), ["STARTED", "STAGE_STARTED"]);
    assert_eq!(d.plan.state, RolloutState::Running);
    assert!(
        d.cells.is_empty(),
        "acknowledgements of the pending plan do not count"
    );
    assert_eq!(d.target_cells, ["a", "c"]);
}

#[test]
fn next_stage_advances_then_completes_after_the_last() {
    let mut d = running(
        vec![
            stage("canary", 0, Gates::default()),
            stage("all", 0, Gates::default()),
        ],
        Duration::minutes(5),
    );
    d.health.requests = 7;
    let mut c = Change::default();
    next_stage(&mut d, &["a".into()], &mut c);
    assert_eq!((d.plan.stage, d.plan.state), (1, RolloutState::Running));
    assert_eq!(d.health, Health::default(), "health is per stage");
    assert_eq!(c.entries[0].detail, "stage 1 `all`");
    let mut c = Change::default();
    next_stage(&mut d, &["a".into()], &mut c);
    assert_eq!((d.plan.stage, d.plan.state), (1, RolloutState::Completed));
    assert_eq!(events(&c), ["COMPLETED"]);
    assert!(c.plan);
}

#[test]
fn operator_actions_follow_the_state() {
    let stages = vec![
        stage("canary", 0, Gates::default()),
        stage("all", 0, Gates::default()),
    ];
    let cells = ["a".to_string()];
    let mut d = running(stages.clone(), Duration::zero());

    let c = apply_op(&mut d, Op::Pause, "ann", &cells).unwrap();
    assert_eq!(d.plan.state, RolloutState::Paused);
    assert!(c.plan);
    assert_eq!(c.entries[0].detail, "by ann");
    let c = apply_op(&mut d, Op::Pause, "ann", &cells).unwrap();
    assert!(
        c.entries.is_empty() && !c.plan,
        "pausing what is paused changes nothing"
    );

    d.plan.state = RolloutState::Stuck;
    d.stuck = Some(Stuck {
        reason: "x".into(),
        cells: vec![],
    });
    apply_op(&mut d, Op::Resume, "ann", &cells).unwrap();
    assert_eq!(d.plan.state, RolloutState::Running);
    assert!(d.stuck.is_none());

    let c = apply_op(&mut d, Op::Advance, "ann", &cells).unwrap();
    assert_eq!(events(&c), ["ADVANCED", "STAGE_STARTED"]);
    assert_eq!(d.plan.stage, 1);

    let c = apply_op(&mut d, Op::Rollback, "ann", &cells).unwrap();
    assert_eq!(events(&c), ["ROLLED_BACK"]);
    assert_eq!(d.plan.state, RolloutState::RolledBack);
    for op in [Op::Advance, Op::Rollback, Op::Pause, Op::Resume] {
        let e = apply_op(&mut d, op, "ann", &cells).unwrap_err();
        assert!(
            matches!(e, Error::Conflict(_)),
            "{op:?} on a finished rollout: {e:?}"
        );
    }
}

#[test]
fn a_pending_rollout_advances_to_start_and_refuses_pause_and_resume() {
    let mut d = running(vec![stage("canary", 0, Gates::default())], Duration::zero());
    d.plan.state = RolloutState::Pending;
    let cells = ["a".to_string()];
    for op in [Op::Pause, Op::Resume] {
        let e = apply_op(&mut d, op, "ann", &cells).unwrap_err();
        assert!(e.to_string().contains("it has not started"), "{e}");
    }
    let c = apply_op(&mut d, Op::Advance, "ann", &cells).unwrap();
    assert_eq!(events(&c), ["ADVANCED", "STARTED", "STAGE_STARTED"]);
    assert_eq!(c.entries[0].detail, "start time skipped by ann");
    assert_eq!(d.plan.state, RolloutState::Running);
}

#[test]
fn aborting_leaves_finished_rollouts_alone() {
    let mut d = running(vec![stage("canary", 0, Gates::default())], Duration::zero());
    let c = mark_aborted(&mut d, "the flag was killed");
    assert_eq!(d.plan.state, RolloutState::Aborted);
    assert_eq!(c.entries[0].detail, "the flag was killed");
    let c = mark_aborted(&mut d, "again");
    assert!(c.entries.is_empty() && !c.plan);
}

#[test]
fn a_freeze_is_noted_once() {
    let mut d = running(vec![stage("canary", 0, Gates::default())], Duration::zero());
    let w = Uuid::now_v7();
    let c = frozen_note(&d, w);
    assert_eq!(events(&c), ["FROZEN"]);
    d.history.extend(c.entries);
    assert!(frozen_note(&d, w).entries.is_empty());
    assert_eq!(
        frozen_note(&d, Uuid::now_v7()).entries.len(),
        1,
        "another window is news"
    );
}

#[test]
fn acknowledgements_are_recorded_and_history_keeps_what_changed() {
    let mut d = running(vec![stage("canary", 0, Gates::default())], Duration::zero());
    let a = ack(&d, "a", 3);
    let version = (4 << 41) | 12345;
    let c = record_ack(&mut d, &a, version);
    assert_eq!(events(&c), ["CELL_ACKNOWLEDGED"]);
    assert_eq!(
        c.entries[0].detail,
        "a serves stage 0 (RUNNING): 3 of 10 tenants exposed, 0 excluded by version"
    );
    assert_eq!(d.cells["a"].plan_version, 4);
    assert!(
        record_ack(&mut d, &a, version + 1).entries.is_empty(),
        "the same exposure again"
    );
    let more = ack(&d, "a", 5);
    assert_eq!(record_ack(&mut d, &more, version + 2).entries.len(), 1);
    assert_eq!(d.cells["a"].exposed_tenants, 5);
    d.plan.state = RolloutState::Completed;
    let done = Ack {
        state: RolloutState::Completed,
        exposed_tenants: 0,
        ..more
    };
    assert!(
        record_ack(&mut d, &done, version + 3).entries.is_empty(),
        "the end of a finished rollout is not news"
    );
}

#[test]
fn a_completed_rollout_leaves_one_rule_per_stage() {
    let mut d = running(vec![stage("canary", 0, Gates::default())], Duration::zero());
    let t = Uuid::now_v7();
    d.plan.stages[0].cohort = Cohort {
        tenant_ids: vec![t],
        cell_ids: vec!["us-1".into()],
        regions: vec![],
        plans: vec!["pro".into()],
        percentage: Some(25.0),
    };
    d.plan.stages.push(stage("all", 0, Gates::default()));
    d.plan.requires_tenant_version = Some(">=2".into());
    let rules = permanent_rules(&d.plan);
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].variant, "on");
    assert_eq!(rules[0].tenant_ids, [t]);
    assert_eq!(rules[0].percentage, Some(25.0));
    let attrs: Vec<_> = rules[0]
        .constraints
        .iter()
        .map(|c| (c.attribute.as_str(), c.operator, c.values.clone()))
        .collect();
    assert_eq!(
        attrs,
        [
            ("cell", Operator::In, vec!["us-1".to_string()]),
            ("plan", Operator::In, vec!["pro".to_string()]),
            ("version", Operator::Semver, vec![">=2".to_string()]),
        ]
    );
    assert_eq!(
        rules[1].constraints.len(),
        1,
        "only the version requirement"
    );
}

// ---- gates ----

#[test]
fn a_stage_waits_for_every_cell_then_turns_stuck_past_the_deadline() {
    let mut d = running(
        vec![stage("canary", 0, Gates::default())],
        Duration::seconds(5),
    );
    let a = ack(&d, "a", 1);
    record_ack(&mut d, &a, 1 << 41);
    let c = judge(&mut d, &["a".into()]);
    assert!(c.entries.is_empty(), "within the deadline it waits");
    assert_eq!(d.plan.state, RolloutState::Running);

    d.stage_started_at = Utc::now() - Duration::seconds(31);
    let c = judge(&mut d, &["a".into()]);
    assert_eq!(events(&c), ["STUCK"]);
    assert!(c.plan);
    assert_eq!(d.plan.state, RolloutState::Stuck);
    assert_eq!(d.stuck.as_ref().unwrap().cells, ["b"]);
    assert!(
        judge(&mut d, &["a".into()]).entries.is_empty(),
        "stuck once, not every tick"
    );

    let b = ack(&d, "b", 1);
    record_ack(&mut d, &b, 1 << 41);
    let c = judge(&mut d, &["a".into()]);
    assert_eq!(events(&c)[0], "RESUMED");
}

#[test]
fn a_failed_gate_rolls_back() {
    let gates = Gates {
        max_error_rate: Some(0.1),
        min_requests: Some(10),
    };
    let mut d = running(vec![stage("canary", 3600, gates)], Duration::seconds(1));
    ack_all(&mut d);
    d.health = Health {
        requests: 5,
        errors: 5,
    };
    assert!(
        judge(&mut d, &[]).entries.is_empty(),
        "too few requests to judge the rate"
    );
    d.health = Health {
        requests: 20,
        errors: 3,
    };
    let c = judge(&mut d, &[]);
    assert_eq!(events(&c), ["GATE_FAILED", "ROLLED_BACK"]);
    assert_eq!(d.plan.state, RolloutState::RolledBack);
}

#[test]
fn a_soaked_stage_advances_unless_it_lacks_requests() {
    let gates = Gates {
        max_error_rate: Some(0.5),
        min_requests: Some(10),
    };
    let stages = vec![
        stage("canary", 60, gates),
        stage("all", 60, Gates::default()),
    ];
    let mut d = running(stages, Duration::seconds(30));
    ack_all(&mut d);
    d.health = Health {
        requests: 4,
        errors: 0,
    };
    assert!(judge(&mut d, &[]).entries.is_empty(), "still soaking");

    d.stage_started_at = Utc::now() - Duration::seconds(61);
    let c = judge(&mut d, &[]);
    assert_eq!(events(&c), ["STUCK"]);
    assert!(
        d.stuck
            .as_ref()
            .unwrap()
            .reason
            .contains("4 of 10 requests")
    );

    d.health = Health {
        requests: 12,
        errors: 1,
    };
    let c = judge(&mut d, &["a".into(), "b".into()]);
    assert_eq!(events(&c), ["GATE_PASSED", "ADVANCED", "STAGE_STARTED"]);
    assert_eq!((d.plan.stage, d.plan.state), (1, RolloutState::Running));
    assert!(d.stuck.is_none());
}
