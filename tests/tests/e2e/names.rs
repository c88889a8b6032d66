//! Names and subjects are validated once, by `shared::names`, on both tiers:
//! what the global tier accepts the cell accepts (characters, not bytes,
//! NFC), text that would display as something else is refused, and a
//! subject is one person whatever its case.

use e2e::stack::{CREATE, code, message};
use e2e::{Backend, Stack};
use serde_json::{Value, json};
use shared::auth::Role;

const ADD: &str = "mutation($i: AddMemberInput!) { addMember(input: $i) { subject role version } }";
const CHANGE: &str =
    "mutation($i: ChangeMemberRoleInput!) { changeMemberRole(input: $i) { subject role version } }";
const MEMBERS: &str = "query($id: ID!) { tenant(id: $id) { name members { subject role } } }";
const REQUEST: &str = "mutation($i: RequestBreakGlassInput!) { requestBreakGlass(input: $i) { id status requester } }";
const APPROVE: &str = "mutation($id: ID!) { approveBreakGlass(id: $id) { id status decidedBy } }";
const ACTIVATE: &str = "mutation($id: ID!) { activateBreakGlass(id: $id) { token } }";

fn create(key: &str, slug: &str, name: &str, owner: Option<&str>) -> Value {
    let mut input = json!({ "idempotencyKey": key, "slug": slug, "name": name,
                            "region": "us-east-1", "plan": "pro" });
    if let Some(o) = owner {
        input["owner"] = json!(o);
    }
    json!({ "input": input })
}

fn field(body: &Value) -> Option<&str> {
    body.pointer("/errors/0/extensions/field")
        .and_then(|v| v.as_str())
}

async fn total(s: &Stack) -> u64 {
    let v = s
        .gql(&s.admin(), "{ tenants { totalCount } }", json!({}))
        .await;
    v["data"]["tenants"]["totalCount"].as_u64().unwrap()
}

#[tokio::test]
async fn a_name_the_global_tier_accepts_the_cell_accepts() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    // 150 characters, 300 bytes: the cell used to count bytes and fail the
    // tenant after the global tier had accepted it.
    let name = "é".repeat(150);
    let t = s
        .gql(&admin, CREATE, create("n-1", "accents", &name, None))
        .await;
    assert!(t.get("errors").is_none(), "{t}");
    let t = &t["data"]["createTenant"];
    assert_eq!(t["status"], "ACTIVE", "{t}");
    assert_eq!(t["name"], name.as_str());
    let id = t["id"].as_str().unwrap().to_owned();
    // The name as the cell holds it.
    let read = s.gql(&admin, MEMBERS, json!({ "id": id })).await;
    assert_eq!(read["data"]["tenant"]["name"], name.as_str(), "{read}");

    // The longest name, 200 characters of 4 bytes each.
    let emoji = "😀".repeat(200);
    let t = s
        .gql(&admin, CREATE, create("n-2", "emoji", &emoji, None))
        .await;
    assert_eq!(t["data"]["createTenant"]["status"], "ACTIVE", "{t}");
    assert_eq!(t["data"]["createTenant"]["name"], emoji.as_str());

    // A decomposed name (e + U+0301, 300 characters) is stored as NFC:
    // 150 characters, the same as the composed one.
    let decomposed = "e\u{301}".repeat(150);
    let t = s
        .gql(
            &admin,
            CREATE,
            create("n-3", "decomposed", &decomposed, None),
        )
        .await;
    assert_eq!(t["data"]["createTenant"]["status"], "ACTIVE", "{t}");
    assert_eq!(t["data"]["createTenant"]["name"], name.as_str());

    // One character more than 200 is refused by the global tier at once.
    let long = s
        .gql(
            &admin,
            CREATE,
            create("n-4", "toolong", &"é".repeat(201), None),
        )
        .await;
    assert_eq!(code(&long), Some("BAD_USER_INPUT"), "{long}");
    assert_eq!(field(&long), Some("input.name"));
    assert!(message(&long).contains("1 to 200 characters"), "{long}");
    s.stop().await;
}

#[tokio::test]
async fn names_and_owners_that_hide_what_they_are_are_refused() {
    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    let before = total(&s).await;
    let hidden = [
        ("nul", "Acme\u{0}Corp", "NUL"),
        ("esc", "Acme\u{1b}[2J", "ESC"),
        ("rlo", "Acme\u{202e}gnp.exe", "U+202E"),
        ("isolate", "\u{2066}Acme\u{2069}", "U+2066"),
        (
            "zero-width",
            "\u{200b}\u{200d}\u{feff}",
            "visible character",
        ),
        ("blank", " \u{3000} ", "1 to 200 characters"),
    ];
    for (i, (what, name, says)) in hidden.iter().enumerate() {
        let body = s
            .gql(
                &admin,
                CREATE,
                create(&format!("h-{i}"), &format!("hidden-{i}"), name, None),
            )
            .await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{what}: {body}");
        assert_eq!(field(&body), Some("input.name"), "{what}: {body}");
        assert!(message(&body).contains(says), "{what}: {body}");
        // The error describes the character; it never echoes it.
        assert!(!message(&body).contains(['\u{0}', '\u{1b}', '\u{202e}']));
    }
    for (i, owner) in [
        "olive\u{0}",
        "olive\u{1b}",
        "\u{202e}evilo",
        "olive\u{200b}",
        "\u{200b}",
        "olive smith",
    ]
    .iter()
    .enumerate()
    {
        let body = s
            .gql(
                &admin,
                CREATE,
                create(
                    &format!("o-{i}"),
                    &format!("owner-{i}"),
                    "Acme",
                    Some(owner),
                ),
            )
            .await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{owner:?}: {body}");
        assert_eq!(field(&body), Some("input.owner"), "{owner:?}: {body}");
    }
    assert_eq!(
        total(&s).await,
        before,
        "a refused create changed the directory"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_subject_is_one_member_whatever_its_case() {
    let s = Stack::start(Backend::Postgres).await;
    let t = s
        .gql(
            &s.admin(),
            CREATE,
            create("m-1", "cases", "Cases", Some("Olive")),
        )
        .await;
    let id = t["data"]["createTenant"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{t}"))
        .to_owned();
    // The owner's token spells the subject in another case: still the owner.
    let olive = s.token("olive", &[], &[], None);
    let add = |sub: &str, key: &str| json!({ "i": { "tenantId": id, "subject": sub, "role": "viewer", "idempotencyKey": key } });
    let bob = s.gql(&olive, ADD, add("bob-a", "add-bob")).await;
    assert_eq!(bob["data"]["addMember"]["subject"], "bob-a", "{bob}");

    // The same person in another case is the same member.
    let upper = s.gql(&olive, ADD, add("BOB-A", "add-bob-upper")).await;
    assert_eq!(code(&upper), Some("CONFLICT"), "{upper}");
    // A zero-width character does not make another person, nor does any
    // text that displays as something else.
    for sub in [
        "bob-a\u{200b}",
        "\u{200b}",
        "bob-a\u{0}",
        "bob-a\u{1b}[0m",
        "\u{202e}a-bob",
        "bob a",
        "",
    ] {
        let body = s.gql(&olive, ADD, add(sub, "add-hidden")).await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{sub:?}: {body}");
        assert_eq!(field(&body), Some("input.subject"), "{sub:?}: {body}");
    }
    let st = s.gql(&olive, MEMBERS, json!({ "id": id })).await;
    let mut subjects: Vec<&str> = st["data"]["tenant"]["members"]
        .as_array()
        .unwrap_or_else(|| panic!("{st}"))
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    subjects.sort();
    // Subjects keep the case they were given in.
    assert_eq!(subjects, ["Olive", "bob-a"], "{st}");

    // Role changes find the member in any case, and the member's own token
    // in another case has the member's level.
    let changed = s
        .gql(
            &olive,
            CHANGE,
            json!({ "i": { "tenantId": id, "subject": "Bob-A", "role": "admin", "expectedVersion": 1 } }),
        )
        .await;
    assert_eq!(
        changed["data"]["changeMemberRole"]["role"], "admin",
        "{changed}"
    );
    assert_eq!(changed["data"]["changeMemberRole"]["subject"], "bob-a");
    let bob_upper = s.token("BOB-A", &[], &[], None);
    let listed = s
        .gql(
            &bob_upper,
            "{ tenants { totalCount edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["data"]["tenants"]["totalCount"], 1, "{listed}");
    assert_eq!(
        listed["data"]["tenants"]["edges"][0]["node"]["id"],
        id.as_str()
    );
    let by_admin = s.gql(&bob_upper, ADD, add("carol", "add-carol")).await;
    assert_eq!(
        by_admin["data"]["addMember"]["subject"], "carol",
        "{by_admin}"
    );
    s.stop().await;
}

#[tokio::test]
async fn four_eyes_refuses_the_requester_in_another_case() {
    let s = Stack::start(Backend::Postgres).await;
    let t = s.create_tenant("foureyes", "us-east-1").await;
    let tenant = t["id"].as_str().unwrap().to_owned();
    let me = s.token("sre-self", &[Role::Sre], &[], None);
    let me_upper = s.token("SRE-SELF", &[Role::Sre], &[], None);
    let other = s.token("sre-other", &[Role::Sre], &[], None);
    let r = s
        .gql(
            &me,
            REQUEST,
            json!({ "i": { "tenantId": tenant, "reason": "SEV1: data fix", "scope": "READ",
                           "durationSeconds": 300, "idempotencyKey": "bg-case" } }),
        )
        .await;
    let id = r["data"]["requestBreakGlass"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();

    let own = s.gql(&me_upper, APPROVE, json!({ "id": id })).await;
    assert_eq!(code(&own), Some("FORBIDDEN"), "{own}");
    assert!(
        message(&own).contains("someone other than its requester"),
        "{own}"
    );
    let mixed = s.token("Sre-Self", &[Role::Sre], &[], None);
    let own = s.gql(&mixed, APPROVE, json!({ "id": id })).await;
    assert_eq!(code(&own), Some("FORBIDDEN"), "{own}");

    // Someone else approves; the requester, in any case, activates.
    let ok = s.gql(&other, APPROVE, json!({ "id": id })).await;
    assert_eq!(
        ok["data"]["approveBreakGlass"]["status"], "APPROVED",
        "{ok}"
    );
    assert_eq!(ok["data"]["approveBreakGlass"]["decidedBy"], "sre-other");
    let act = s.gql(&me_upper, ACTIVATE, json!({ "id": id })).await;
    assert!(
        act["data"]["activateBreakGlass"]["token"].is_string(),
        "{act}"
    );
    s.stop().await;
}
