//! The rules of break-glass access, without a database.

use chrono::{DateTime, Duration, Utc};
use shared::Error;
use shared::auth::{Principal, Role};
use uuid::Uuid;

use super::rules::*;
use crate::entity::break_glass as bg;

fn row(status: &str, now: DateTime<Utc>) -> bg::Model {
    bg::Model {
        id: Uuid::now_v7(),
        tenant_id: Uuid::now_v7(),
        requester: "ann".into(),
        reason: "INC-1".into(),
        scope: "WRITE".into(),
        duration_secs: 7200,
        status: status.into(),
        request_expires_at: now + Duration::minutes(30),
        decided_by: None,
        decided_at: None,
        denial_reason: None,
        expires_at: None,
        activated_at: None,
        revoked_by: None,
        revoked_at: None,
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

fn request(duration_secs: i64, reason: &str) -> NewRequest {
    NewRequest {
        tenant_id: Uuid::now_v7(),
        reason: reason.into(),
        scope: Scope::Read,
        duration_secs,
    }
}

fn conflict(r: shared::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(Error::Conflict(m)) => m,
        other => panic!("expected CONFLICT, got {other:?}"),
    }
}

fn sre(subject: &str) -> Principal {
    Principal {
        subject: subject.into(),
        ..principal(vec![Role::Sre], None)
    }
}

fn principal(roles: Vec<Role>, break_glass: Option<Uuid>) -> Principal {
    Principal {
        subject: "ann".into(),
        roles,
        tenants: vec![],
        cell: None,
        break_glass,
    }
}

#[test]
fn scopes_name_their_tenant_role() {
    assert_eq!(Scope::Write.as_str(), "WRITE");
    assert_eq!(Scope::role(Scope::Write.as_str()), Role::TenantAdmin);
    assert_eq!(Scope::role(Scope::Read.as_str()), Role::TenantViewer);
    assert_eq!(serde_json::to_value(Scope::Read).unwrap(), "Read");
}

#[test]
fn operators_act_with_their_own_tokens_only() {
    assert!(operator(&principal(vec![Role::Sre], None), "approveBreakGlass").is_ok());
    let e = operator(
        &principal(vec![Role::Sre], Some(Uuid::now_v7())),
        "approveBreakGlass",
    );
    assert!(matches!(e, Err(Error::Forbidden(m)) if m.contains("break-glass token")));
    let e = operator(
        &principal(vec![Role::TenantAdmin], None),
        "approveBreakGlass",
    );
    assert!(matches!(e, Err(Error::Forbidden(_))));
}

#[test]
fn a_request_needs_a_duration_within_the_maximum_and_a_reason() {
    assert!(check_request(&request(3600, "INC-1"), 14_400).is_ok());
    for (r, field) in [
        (request(0, "INC-1"), "input.durationSeconds"),
        (request(14_401, "INC-1"), "input.durationSeconds"),
        (request(60, "   "), "input.reason"),
        (request(60, &"x".repeat(2001)), "input.reason"),
    ] {
        match check_request(&r, 14_400) {
            Err(Error::BadInput { field: Some(f), .. }) => assert_eq!(f, field),
            other => panic!("expected BAD_USER_INPUT on {field}, got {other:?}"),
        }
    }
    assert_eq!(denial_reason("  no  ".into()).unwrap(), "no");
    assert!(denial_reason(" ".into()).is_err());
}

#[test]
fn approval_opens_the_window_for_someone_else_than_the_requester() {
    let now = Utc::now();
    let r = row(PENDING, now);
    assert!(matches!(
        approval(&r, &sre("ann"), now),
        Err(Error::Forbidden(_))
    ));
    let c = approval(&r, &sre("bob"), now).unwrap();
    assert_eq!(c.status, APPROVED);
    assert_eq!(c.cols.len(), 3);
    assert_eq!(
        c.detail["expiresAt"],
        serde_json::json!(now + Duration::seconds(7200))
    );
}

#[test]
fn only_pending_requests_are_decided() {
    let now = Utc::now();
    let mut r = row(PENDING, now);
    r.request_expires_at = now - Duration::seconds(1);
    assert!(conflict(approval(&r, &sre("bob"), now)).contains("expired unapproved"));
    for (status, says) in [
        (EXPIRED, "has expired"),
        (DENIED, "was denied"),
        (REVOKED, "was revoked"),
        (APPROVED, "is already APPROVED"),
    ] {
        let r = row(status, now);
        assert!(
            conflict(approval(&r, &sre("bob"), now)).contains(says),
            "{status}"
        );
        assert!(conflict(denial(&r, "bob", "no", now)).contains("denyBreakGlass"));
    }
    let c = denial(&row(PENDING, now), "bob", "not needed", now).unwrap();
    assert_eq!(c.status, DENIED);
    assert_eq!(c.detail["reason"], "not needed");
}

#[test]
fn only_the_requester_activates_within_the_window() {
    let now = Utc::now();
    let mut r = row(APPROVED, now);
    r.expires_at = Some(now + Duration::hours(2));
    assert!(matches!(
        activation_window(&r, &sre("bob"), now),
        Err(Error::Forbidden(_))
    ));
    let end = activation_window(&r, &sre("ann"), now).unwrap();
    assert_eq!(end, now + Duration::hours(2));
    assert_eq!(
        token_expiry(end, now),
        now + Duration::hours(1),
        "an hour at most"
    );
    let soon = now + Duration::minutes(5);
    assert_eq!(token_expiry(soon, now), soon, "never past the window");

    r.expires_at = Some(now - Duration::seconds(1));
    assert!(conflict(activation_window(&r, &sre("ann"), now)).contains("has expired"));
    assert!(
        conflict(activation_window(&row(PENDING, now), &sre("ann"), now)).contains("not approved")
    );
    assert!(conflict(activation_window(&row(DENIED, now), &sre("ann"), now)).contains("is DENIED"));
}

#[test]
fn live_requests_are_revoked_until_their_window_ends() {
    let now = Utc::now();
    for status in [PENDING, APPROVED, ACTIVE] {
        assert_eq!(
            revocation(&row(status, now), "bob", now).unwrap().status,
            REVOKED
        );
    }
    assert!(conflict(revocation(&row(EXPIRED, now), "bob", now)).contains("nothing to revoke"));

    let mut r = row(REVOKED, now);
    r.revoked_at = Some(now);
    assert_eq!(
        revoked(&r).until,
        now,
        "never approved: until the revocation"
    );
    r.expires_at = Some(now + Duration::hours(1));
    assert_eq!(revoked(&r).until, now + Duration::hours(1));
}

#[test]
fn requests_expire_past_their_deadline_or_window() {
    let now = Utc::now();
    let mut r = row(PENDING, now);
    assert!(expiry(&r, now).is_err(), "not due yet");
    r.request_expires_at = now;
    assert_eq!(expiry(&r, now).unwrap().status, EXPIRED);
    let mut r = row(ACTIVE, now);
    r.expires_at = Some(now + Duration::seconds(1));
    assert!(expiry(&r, now).is_err());
    r.expires_at = Some(now - Duration::seconds(1));
    assert_eq!(expiry(&r, now).unwrap().status, EXPIRED);
    assert!(expiry(&row(DENIED, now), now).is_err());
}
