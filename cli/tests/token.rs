//! `tenantctl token` prints a JWT that the dev signing key verifies.

use std::process::Command;

fn tenantctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tenantctl"))
}

#[test]
fn token_needs_the_dev_key_and_valid_claims() {
    let dir = tempfile::tempdir().unwrap();
    // No key yet: a clear error, nothing on stdout.
    let out = tenantctl()
        .args(["token", "--subject", "a", "--role", "sre", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenantctl dev"));

    let secret = "0123456789abcdef0123456789abcdef0123456789abcdef";
    std::fs::write(dir.path().join("signing.key"), secret).unwrap();
    let tenant = uuid::Uuid::now_v7().to_string();
    let out = tenantctl()
        .args([
            "token",
            "--subject",
            "alice",
            "--role",
            "tenant-viewer",
            "--tenant",
            &tenant,
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwt = String::from_utf8(out.stdout).unwrap();
    let keys = shared::auth::Keys::hs256(
        &[secret.into()],
        shared::auth::DEFAULT_ISSUER,
        shared::auth::DEFAULT_AUDIENCE,
    )
    .unwrap();
    let p = keys.verify(jwt.trim()).expect("minted token verifies");
    assert_eq!(p.subject, "alice");
    assert_eq!(p.roles, vec![shared::auth::Role::TenantViewer]);
    assert_eq!(p.tenants[0].to_string(), tenant);

    for bad in [
        vec!["--role", "wizard"],
        vec!["--role", "tenant-viewer"],
        vec!["--role", "data-plane"],
    ] {
        let out = tenantctl()
            .args(["token", "--subject", "a", "--data-dir"])
            .arg(dir.path())
            .args(&bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad:?} should be refused");
        assert!(out.stdout.is_empty());
    }
}
