//! The alert rules cannot drift from the code: every metric that
//! `deploy/prometheus/rules.yaml` references (and every histogram bucket
//! bound it reads) is exported by a running tier's `/metrics` once the
//! operations behind the SLOs ran.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::flags::{boolean_flag, data_plane, evaluate};
use e2e::{Backend, Stack};
use serde_json::json;

/// `(metric, le)` pairs the rules read: `tcp_…` names, with the `le` bound
/// when the selector names one.
fn referenced(rules: &str) -> BTreeSet<(String, Option<String>)> {
    let mut out = BTreeSet::new();
    let b = rules.as_bytes();
    let mut i = 0;
    while let Some(at) = rules[i..].find("tcp_") {
        let start = i + at;
        // A whole identifier only (not the tail of another name).
        let boundary = start == 0
            || !(b[start - 1].is_ascii_alphanumeric()
                || b[start - 1] == b'_'
                || b[start - 1] == b':');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        if boundary {
            let name = rules[start..end].to_owned();
            let le = rules[end..].strip_prefix('{').and_then(|sel| {
                let sel = &sel[..sel.find('}')?];
                let v = sel
                    .split(',')
                    .find_map(|m| m.trim().strip_prefix("le=\""))?;
                Some(v.trim_end_matches('"').to_owned())
            });
            out.insert((name, le));
        }
        i = end.max(start + 4);
    }
    out
}

#[test]
fn the_rule_scanner_reads_names_and_bucket_bounds() {
    let r = referenced(
        "sum(rate(tcp_a_bucket{x=\"1\",le=\"0.25\"}[5m])) / sum(rate(tcp_a_count[5m])) slo:tcp_not:ratio",
    );
    assert_eq!(
        r.into_iter().collect::<Vec<_>>(),
        vec![
            ("tcp_a_bucket".to_owned(), Some("0.25".to_owned())),
            ("tcp_a_count".to_owned(), None)
        ]
    );
}

#[tokio::test]
async fn every_metric_the_alert_rules_use_is_exported() {
    let rules_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/rules.yaml"
    );
    let rules = std::fs::read_to_string(rules_path).expect("deploy/prometheus/rules.yaml");
    let wanted = referenced(&rules);
    assert!(
        wanted.len() >= 5,
        "the rules reference the SLO metrics: {wanted:?}"
    );

    let s = Stack::start(Backend::Postgres).await;
    let admin = s.admin();
    // Provisioning latency and API availability.
    let t = s.create_tenant("slo-one", "us-east-1").await;
    let id = t["id"].as_str().unwrap().to_owned();
    let read = s
        .gql(
            &admin,
            "query($id: ID!) { tenant(id: $id) { name } }",
            json!({ "id": id }),
        )
        .await;
    assert!(read.get("errors").is_none(), "{read}");
    // Config and flag propagation into every cell.
    let key = s
        .gql(
            &admin,
            "mutation($i: DefineConfigKeyInput!) { defineConfigKey(input: $i) { version } }",
            json!({ "i": { "key": "slo.limit", "type": "INT", "default": 1, "scopes": ["TENANT"] } }),
        )
        .await;
    assert!(key.get("errors").is_none(), "{key}");
    boolean_flag(&s, "slo-flag").await;
    // Data-plane hook availability.
    let cell = s.cell("us-east-1-a").url();
    let (status, _) = evaluate(
        &cell,
        &data_plane(&s, "us-east-1-a"),
        &id,
        "slo-flag",
        "prod",
    )
    .await;
    assert_eq!(status, 200);

    let mut exported = String::new();
    for _ in 0..200 {
        exported.clear();
        for base in [s.url(), cell.clone(), s.cell("eu-west-1-a").url()] {
            exported.push_str(
                &s.http
                    .get(format!("{base}/metrics"))
                    .bearer_auth(e2e::stack::metrics_token())
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap(),
            );
        }
        let propagated = ["global.config-keys", "global.flags"].iter().all(|st| {
            exported.lines().any(|l| {
                l.starts_with("tcp_sync_propagation_seconds_count{")
                    && l.contains(&format!("stream=\"{st}\""))
            })
        });
        if propagated {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut missing = Vec::new();
    for (name, le) in &wanted {
        let present = exported.lines().any(|l| {
            l.starts_with(&format!("{name}{{"))
                && le
                    .as_ref()
                    .is_none_or(|le| l.contains(&format!("le=\"{le}\"")))
        });
        if !present {
            missing.push(format!(
                "{name}{}",
                le.as_ref()
                    .map(|l| format!(" (le=\"{l}\")"))
                    .unwrap_or_default()
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "rules.yaml references metrics no tier exports: {missing:?}\nexported:\n{}",
        exported
            .lines()
            .filter(|l| l.starts_with("# TYPE"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    s.stop().await;
}
