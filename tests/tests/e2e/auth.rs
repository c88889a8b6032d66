//! Every request carries a verified JWT; roles decide what it may do.

use base64::Engine;
use e2e::stack::{CREATE, SECRET, code, message};
use e2e::{Backend, Stack};
use serde_json::json;
use shared::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, Keys, Role};
use shared::ids::TenantId;

const READ: &str = "query($id: ID!) { tenant(id: $id) { id slug } }";

#[tokio::test]
async fn bad_tokens_are_unauthenticated() {
    let s = Stack::start(Backend::Postgres).await;
    let q = "{ __typename }";

    let (status, body) = s.gql_at(&s.url(), None, q, json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(code(&body), Some("UNAUTHENTICATED"));

    let expired = s
        .keys
        .mint("x", vec![Role::PlatformAdmin], vec![], None, -600)
        .unwrap();
    let other_key = Keys::hs256(
        &["another-secret-0123456789abcdef-xyz".into()],
        DEFAULT_ISSUER,
        DEFAULT_AUDIENCE,
    )
    .unwrap()
    .mint("x", vec![Role::PlatformAdmin], vec![], None, 600)
    .unwrap();
    let wrong_aud = Keys::hs256(&[SECRET.into()], DEFAULT_ISSUER, "someone-else")
        .unwrap()
        .mint("x", vec![Role::PlatformAdmin], vec![], None, 600)
        .unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = chrono::Utc::now().timestamp() + 600;
    let alg_none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(
            format!(r#"{{"sub":"x","iss":"{DEFAULT_ISSUER}","aud":"{DEFAULT_AUDIENCE}","exp":{exp},"iat":0,"roles":["platform-admin"]}}"#)
                .as_bytes()
        )
    );
    // A token whose exp is a string must not slip through (CVE-2026-25537).
    let header = b64.encode(
        format!(
            r#"{{"alg":"HS256","typ":"JWT","kid":"{}"}}"#,
            shared::auth::key_id(SECRET)
        )
        .as_bytes(),
    );
    let body = b64.encode(
        format!(r#"{{"sub":"x","iss":"{DEFAULT_ISSUER}","aud":"{DEFAULT_AUDIENCE}","exp":"never","iat":0,"roles":["platform-admin"]}}"#)
            .as_bytes(),
    );
    let sig = {
        use sha2_shim::hmac_sha256;
        b64.encode(hmac_sha256(
            SECRET.as_bytes(),
            format!("{header}.{body}").as_bytes(),
        ))
    };
    let string_exp = format!("{header}.{body}.{sig}");

    for (what, tok) in [
        ("expired", expired),
        ("wrong key", other_key),
        ("wrong audience", wrong_aud),
        ("alg none", alg_none),
        ("string exp", string_exp),
        ("garbage", "not.a.jwt".to_string()),
    ] {
        let (status, body) = s.gql_at(&s.url(), Some(&tok), q, json!({})).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(code(&body), Some("UNAUTHENTICATED"), "{what}: {body}");
    }
    s.stop().await;
}

/// HMAC-SHA256, to forge a correctly signed token with a wrongly typed claim.
mod sha2_shim {
    pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::digest([ipad.as_slice(), msg].concat());
        let inner: &[u8] = &inner;
        Sha256::digest([opad.as_slice(), inner].concat()).to_vec()
    }
}

#[tokio::test]
async fn roles_decide_reads_and_writes() {
    let s = Stack::start(Backend::Postgres).await;
    let a = s.create_tenant("tenant-a", "us-east-1").await;
    let b = s.create_tenant("tenant-b", "eu-west-1").await;
    let a_id: TenantId = a["id"].as_str().unwrap().parse().unwrap();
    let b_id = b["id"].as_str().unwrap().to_owned();

    let viewer = s.token("v", &[Role::TenantViewer], &[a_id], None);
    let tenant_admin = s.token("ta", &[Role::TenantAdmin], &[a_id], None);
    let sre = s.token("sre", &[Role::Sre], &[], None);
    let data_plane = s.token("dp", &[Role::DataPlane], &[], Some("us-east-1-a"));

    // A viewer of A sees A…
    let own = s.gql(&viewer, READ, json!({ "id": a_id })).await;
    assert_eq!(own["data"]["tenant"]["slug"], "tenant-a", "{own}");
    // …and nothing of B, not even that it exists.
    let hidden = s.gql(&viewer, READ, json!({ "id": b_id })).await;
    assert_eq!(code(&hidden), Some("NOT_FOUND"));
    let unknown = TenantId::new();
    let missing = s.gql(&viewer, READ, json!({ "id": unknown })).await;
    assert_eq!(message(&hidden), format!("tenant {b_id} not found"));
    assert_eq!(message(&missing), format!("tenant {unknown} not found"));
    let by_slug = s
        .gql(
            &viewer,
            "{ tenantBySlug(slug: \"tenant-b\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&by_slug), Some("NOT_FOUND"));
    let list = s
        .gql(
            &viewer,
            "{ tenants { totalCount edges { node { slug } } } }",
            json!({}),
        )
        .await;
    assert_eq!(list["data"]["tenants"]["totalCount"], 1, "{list}");
    assert_eq!(
        list["data"]["tenants"]["edges"][0]["node"]["slug"],
        "tenant-a"
    );
    let cells = s.gql(&viewer, "{ cells { id } }", json!({})).await;
    assert_eq!(code(&cells), Some("FORBIDDEN"));

    let vars = json!({ "input": { "idempotencyKey": "r1", "slug": "newco", "name": "N", "region": "us-east-1", "plan": "free" } });
    for (who, tok) in [
        ("viewer", &viewer),
        ("tenant-admin", &tenant_admin),
        ("sre", &sre),
    ] {
        let body = s.gql(tok, CREATE, vars.clone()).await;
        assert_eq!(code(&body), Some("FORBIDDEN"), "{who}: {body}");
    }

    // SREs read everything.
    let sre_read = s.gql(&sre, READ, json!({ "id": b_id })).await;
    assert_eq!(sre_read["data"]["tenant"]["slug"], "tenant-b");
    let sre_cells = s.gql(&sre, "{ cells { id } }", json!({})).await;
    assert_eq!(sre_cells["data"]["cells"].as_array().unwrap().len(), 2);

    // Data-plane tokens are for the hooks.
    let dp = s.gql(&data_plane, READ, json!({ "id": a_id })).await;
    assert_eq!(code(&dp), Some("FORBIDDEN"));

    // Only a cell's own service identity may heartbeat for it.
    let other_cell = s.token(
        "cell:eu-west-1-a",
        &[Role::Service],
        &[],
        Some("eu-west-1-a"),
    );
    let hb = "mutation { cellHeartbeat(id: \"us-east-1-a\") { id } }";
    assert_eq!(
        code(&s.gql(&other_cell, hb, json!({})).await),
        Some("FORBIDDEN")
    );
    let own_cell = s.token(
        "cell:us-east-1-a",
        &[Role::Service],
        &[],
        Some("us-east-1-a"),
    );
    let ok = s.gql(&own_cell, hb, json!({})).await;
    assert_eq!(ok["data"]["cellHeartbeat"]["id"], "us-east-1-a", "{ok}");
    s.stop().await;
}

#[tokio::test]
async fn cells_accept_only_the_control_plane() {
    let s = Stack::start(Backend::Postgres).await;
    let cell = s.cell("us-east-1-a").url();
    let input = json!({ "input": { "id": TenantId::new(), "slug": "direct", "name": "D", "region": "us-east-1", "plan": "free" } });
    let q = "mutation($input: CreateTenantInput!) { createTenant(input: $input) { id } }";

    let (status, none) = s.gql_at(&cell, None, q, input.clone()).await;
    assert_eq!(
        (status.as_u16(), code(&none)),
        (401, Some("UNAUTHENTICATED"))
    );
    let sre = s.token("sre", &[Role::Sre], &[], None);
    let (_, refused) = s.gql_at(&cell, Some(&sre), q, input.clone()).await;
    assert_eq!(code(&refused), Some("FORBIDDEN"));
    let foreign_dp = s.token("dp", &[Role::DataPlane], &[], Some("eu-west-1-a"));
    let (_, refused) = s
        .gql_at(&cell, Some(&foreign_dp), "{ cell { id } }", json!({}))
        .await;
    assert_eq!(code(&refused), Some("FORBIDDEN"));

    let svc = s.token("global", &[Role::Service], &[], None);
    let (_, wrong_region) = s
        .gql_at(&cell, Some(&svc), q, json!({ "input": { "id": TenantId::new(), "slug": "direct", "name": "D", "region": "eu-west-1", "plan": "free" } }))
        .await;
    assert_eq!(code(&wrong_region), Some("BAD_USER_INPUT"));
    let (_, ok) = s.gql_at(&cell, Some(&svc), q, input.clone()).await;
    assert!(ok.get("errors").is_none(), "{ok}");
    // Idempotent by id: the same call again returns the same tenant.
    let (_, again) = s.gql_at(&cell, Some(&svc), q, input).await;
    assert_eq!(
        ok["data"]["createTenant"]["id"],
        again["data"]["createTenant"]["id"]
    );
    s.stop().await;
}
