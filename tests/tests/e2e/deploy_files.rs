//! The deployment files stay valid: every Kubernetes manifest against the
//! Kubernetes schemas (`kubernetes-validate`, installed by `.ci/run`), the
//! probes and policies the control plane relies on, the compose file (with
//! `docker compose config` where that tool exists), and the alert rules
//! against their generator.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every YAML file under `deploy/k8s` that is a Kubernetes resource (not
/// the kustomization itself).
fn manifests() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root().join("deploy/k8s")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml")
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The YAML documents of `path` as JSON, read with Python's `yaml` (which
/// `kubernetes-validate` brings along).
fn yaml_docs(path: &Path) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
        ])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed to read YAML ({e})"));
    assert!(
        out.status.success(),
        "cannot read {} as YAML (PyYAML comes with `pip install kubernetes-validate`): {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let files = manifests();
    assert!(files.len() >= 8, "{files:?}");
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!("kubernetes-validate is missing ({e}): `pip install kubernetes-validate` (.ci/run installs it)")
        });
    assert!(
        out.status.success(),
        "kubernetes-validate refused a manifest:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every manifest but the example secrets is part of the kustomization.
    let kustomization =
        std::fs::read_to_string(root().join("deploy/k8s/kustomization.yaml")).unwrap();
    for f in &files {
        let rel = f
            .strip_prefix(root().join("deploy/k8s"))
            .unwrap()
            .to_str()
            .unwrap();
        if rel != "secrets.example.yaml" {
            assert!(
                kustomization.contains(&format!("- {rel}")),
                "{rel} is not listed in kustomization.yaml"
            );
        }
    }
}

#[test]
fn workloads_probe_health_and_readiness_and_cells_egress_only_where_allowed() {
    let mut workloads = 0;
    let mut cell_sets = Vec::new();
    let mut policies = Vec::new();
    for f in manifests() {
        for doc in yaml_docs(&f) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            if kind == "Deployment" || kind == "StatefulSet" {
                workloads += 1;
                let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
                for c in doc["spec"]["template"]["spec"]["containers"]
                    .as_array()
                    .unwrap()
                {
                    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
                    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
                }
                if kind == "StatefulSet" {
                    cell_sets.push(doc.clone());
                }
            }
            if kind == "NetworkPolicy" {
                policies.push(doc);
            }
        }
    }
    assert!(
        workloads >= 3,
        "a global Deployment and a cell StatefulSet per region"
    );
    assert!(cell_sets.len() >= 2, "a cell StatefulSet per region");
    // Each cell has its own database URL and database settings.
    for set in &cell_sets {
        let name = set["metadata"]["name"].as_str().unwrap();
        let env = set["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
        assert!(
            env.contains(&format!("{name}-database")),
            "{name} reads its own database secret"
        );
    }
    // Cell egress: DNS, Redis, the global tier and the region's PostgreSQL, nothing else.
    let mut ports = std::collections::BTreeSet::new();
    for p in &policies {
        assert_eq!(p["spec"]["policyTypes"], serde_json::json!(["Egress"]));
        for rule in p["spec"]["egress"].as_array().unwrap() {
            for port in rule["ports"].as_array().unwrap() {
                ports.insert(port["port"].as_i64().unwrap());
            }
        }
    }
    assert_eq!(
        ports.into_iter().collect::<Vec<_>>(),
        vec![53, 5432, 6379, 8080],
        "cells reach DNS, PostgreSQL, Redis and the global tier only"
    );
}

#[test]
fn compose_file_runs_both_tiers_with_backing_services_and_health_checks() {
    let path = root().join("docker-compose.yml");
    let doc = yaml_docs(&path).remove(0);
    let services = doc["services"].as_object().unwrap();
    for s in [
        "global",
        "cell-us-east-1-a",
        "cell-eu-west-1-a",
        "postgres-global",
        "postgres-us-east-1",
        "postgres-eu-west-1",
        "redis",
        "otel-collector",
        "jaeger",
    ] {
        assert!(services.contains_key(s), "service {s}");
    }
    for app in ["global", "cell-us-east-1-a", "cell-eu-west-1-a"] {
        let svc = &services[app];
        assert!(
            svc["healthcheck"]["test"].to_string().contains("/readyz"),
            "{app} is healthy once ready"
        );
        let deps = svc["depends_on"].as_object().unwrap();
        assert!(
            deps.values().all(|d| d["condition"].is_string()),
            "{app} waits on conditions"
        );
        assert!(
            svc["environment"]
                .to_string()
                .contains("OTEL_EXPORTER_OTLP_ENDPOINT")
        );
    }
    for cell in ["cell-us-east-1-a", "cell-eu-west-1-a"] {
        assert_eq!(
            services[cell]["depends_on"]["global"]["condition"],
            "service_healthy"
        );
    }
    // Where the Compose tool exists, it must accept the file as it is.
    let compose = Command::new("docker").args(["compose", "version"]).output();
    match compose {
        Ok(o) if o.status.success() => {
            let out = Command::new("docker")
                .args(["compose", "-f"])
                .arg(&path)
                .args(["config", "--quiet"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "docker compose config refused the file: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        _ => eprintln!(
            "docker compose is not installed here: only the structure of docker-compose.yml was checked"
        ),
    }
}

#[test]
fn alert_rules_are_what_their_generator_writes() {
    let out = Command::new("python3")
        .arg(root().join("deploy/prometheus/generate.py"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read_to_string(root().join("deploy/prometheus/rules.yaml")).unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        committed,
        "deploy/prometheus/rules.yaml is stale: python3 deploy/prometheus/generate.py > deploy/prometheus/rules.yaml"
    );
    // And it is YAML with the groups Prometheus expects.
    let doc = yaml_docs(&root().join("deploy/prometheus/rules.yaml")).remove(0);
    let groups = doc["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 10, "an SLI group and an alert group per SLO");
}
