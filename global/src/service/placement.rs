//! The placement rule, deterministic and explainable. A cell is ruled out,
//! in this order, when it is in another region (data residency), DOWN,
//! DRAINING, under maintenance (`service::maintenance`), lacks the label the plan's policy requires (only where some
//! cell of the region has it), or is full. Among the rest the least loaded
//! by weighted share (tenants / capacity / weight) wins, ties by cell id;
//! every other cell is reported with the rule that ruled it out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use shared::ids::{Plan, Region};
use shared::{Error, Result};

use crate::entity::cell;
use crate::service::cells::{DRAINING, MAINTENANCE, UP};

/// Why a cell was not chosen.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Another region: data never leaves its region.
    Region,
    /// Not heartbeating.
    Down,
    /// An operator stopped new placements.
    Draining,
    /// A maintenance window in progress covers the cell.
    Maintenance,
    /// The plan requires a label this cell lacks.
    PlanIsolation,
    /// At capacity.
    Capacity,
    /// Eligible, but more loaded (by weighted share) than the chosen cell.
    Load,
}

/// Plan → the label (key, value) its tenants need where such cells exist.
pub type Policy = BTreeMap<String, (String, String)>;

#[derive(Debug, Clone)]
pub struct Decision {
    pub chosen: Option<cell::Model>,
    pub rejected: Vec<(cell::Model, Rule)>,
}

/// Evaluates every cell for a tenant of `plan` in `region`.
pub fn evaluate(
    region: &Region,
    plan: &Plan,
    cells: &[cell::Model],
    counts: &HashMap<String, i64>,
    policy: &Policy,
) -> Decision {
    let load = |c: &cell::Model| counts.get(&c.id).copied().unwrap_or(0);
    let share =
        |c: &cell::Model| load(c) as f64 / c.capacity.max(1) as f64 / c.weight.max(1) as f64;
    let required = policy.get(plan.as_str()).filter(|(k, v)| {
        cells
            .iter()
            .any(|c| c.region == region.as_str() && c.label(k).as_deref() == Some(v.as_str()))
    });
    let mut rejected = Vec::new();
    let mut eligible = Vec::new();
    for c in cells {
        let rule = if c.region != region.as_str() {
            Some(Rule::Region)
        } else if c.status != UP {
            Some(Rule::Down)
        } else if c.state == DRAINING {
            Some(Rule::Draining)
        } else if c.state == MAINTENANCE {
            Some(Rule::Maintenance)
        } else if required.is_some_and(|(k, v)| c.label(k).as_deref() != Some(v.as_str())) {
            Some(Rule::PlanIsolation)
        } else if load(c) >= c.capacity {
            Some(Rule::Capacity)
        } else {
            None
        };
        match rule {
            Some(r) => rejected.push((c.clone(), r)),
            None => eligible.push(c),
        }
    }
    eligible.sort_by(|a, b| share(a).total_cmp(&share(b)).then(a.id.cmp(&b.id)));
    let chosen = eligible.first().map(|c| (*c).clone());
    rejected.extend(
        eligible
            .into_iter()
            .skip(1)
            .map(|c| (c.clone(), Rule::Load)),
    );
    rejected.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    Decision { chosen, rejected }
}

/// The cell for a new tenant, or a coded error that says why there is none.
pub fn choose(
    region: &Region,
    plan: &Plan,
    cells: &[cell::Model],
    counts: &HashMap<String, i64>,
    policy: &Policy,
) -> Result<cell::Model> {
    let d = evaluate(region, plan, cells, counts, policy);
    if let Some(c) = d.chosen {
        return Ok(c);
    }
    let in_region: Vec<&(cell::Model, Rule)> = d
        .rejected
        .iter()
        .filter(|(_, r)| *r != Rule::Region)
        .collect();
    if in_region.is_empty() {
        let known: BTreeSet<&str> = cells.iter().map(|c| c.region.as_str()).collect();
        let known: Vec<&str> = known.into_iter().collect();
        return Err(Error::bad_input(
            "input.region",
            format!(
                "unknown region `{region}`; valid regions: {}",
                if known.is_empty() {
                    "(none: no cell has registered yet)".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    let load = |c: &cell::Model| counts.get(&c.id).copied().unwrap_or(0);
    if in_region.iter().all(|(_, r)| *r == Rule::Maintenance) {
        let cells: Vec<&str> = in_region.iter().map(|(c, _)| c.id.as_str()).collect();
        return Err(Error::Unavailable(format!(
            "every cell in region {region} is under maintenance ({}); retry after the window",
            cells.join(", ")
        )));
    }
    if in_region.iter().all(|(_, r)| *r == Rule::Down) {
        let states: Vec<String> = in_region
            .iter()
            .map(|(c, _)| format!("{} is {}", c.id, c.status))
            .collect();
        return Err(Error::Unavailable(format!(
            "no cell in region {region} is UP ({}); retry when one is back",
            states.join(", ")
        )));
    }
    if in_region
        .iter()
        .all(|(_, r)| matches!(r, Rule::Down | Rule::Capacity))
    {
        let full: Vec<String> = in_region
            .iter()
            .filter(|(_, r)| *r == Rule::Capacity)
            .map(|(c, _)| format!("{}: {}/{}", c.id, load(c), c.capacity))
            .collect();
        return Err(Error::Unavailable(format!(
            "every UP cell in region {region} is at capacity ({}); add a cell or raise capacity",
            full.join(", ")
        )));
    }
    let why: Vec<String> = in_region
        .iter()
        .map(|(c, r)| format!("{}: {r:?}", c.id))
        .collect();
    Err(Error::Unavailable(format!(
        "no cell in region {region} takes new {plan} tenants ({})",
        why.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::cells::ACCEPTING;
    use chrono::Utc;
    use shared::Code;

    fn cell(id: &str, region: &str, status: &str, capacity: i64) -> cell::Model {
        cell::Model {
            id: id.into(),
            region: region.into(),
            endpoint: "http://x".into(),
            capacity,
            status: status.into(),
            last_heartbeat_at: Utc::now(),
            registered_at: Utc::now(),
            weight: 1,
            labels: "{}".into(),
            state: ACCEPTING.into(),
            version: 1,
        }
    }

    fn region(s: &str) -> Region {
        Region::parse(s).unwrap()
    }

    fn pro() -> Plan {
        Plan::parse("pro").unwrap()
    }

    fn choose_pro(
        r: &str,
        cells: &[cell::Model],
        counts: &HashMap<String, i64>,
    ) -> Result<cell::Model> {
        choose(&region(r), &pro(), cells, counts, &Policy::new())
    }

    #[test]
    fn picks_least_loaded_up_cell_in_region() {
        let cells = vec![
            cell("us-a", "us-east-1", UP, 10),
            cell("us-b", "us-east-1", UP, 10),
            cell("eu-a", "eu-west-1", UP, 10),
        ];
        let counts = HashMap::from([("us-a".to_string(), 5), ("us-b".to_string(), 2)]);
        assert_eq!(choose_pro("us-east-1", &cells, &counts).unwrap().id, "us-b");
        assert_eq!(choose_pro("eu-west-1", &cells, &counts).unwrap().id, "eu-a");
    }

    #[test]
    fn never_leaves_the_region() {
        let cells = vec![
            cell("us-a", "us-east-1", "DOWN", 10),
            cell("eu-a", "eu-west-1", UP, 10),
        ];
        let e = choose_pro("us-east-1", &cells, &HashMap::new()).unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.to_string().contains("us-a is DOWN"));
    }

    #[test]
    fn unknown_region_lists_valid_ones() {
        let cells = vec![
            cell("us-a", "us-east-1", UP, 10),
            cell("eu-a", "eu-west-1", UP, 10),
        ];
        let e = choose_pro("ap-south-1", &cells, &HashMap::new()).unwrap_err();
        assert_eq!(e.code(), Code::BadUserInput);
        assert!(e.to_string().contains("eu-west-1, us-east-1"), "{e}");
    }

    #[test]
    fn full_region_is_unavailable() {
        let cells = vec![cell("us-a", "us-east-1", UP, 1)];
        let counts = HashMap::from([("us-a".to_string(), 1)]);
        let e = choose_pro("us-east-1", &cells, &counts).unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.to_string().contains("at capacity"), "{e}");
    }

    #[test]
    fn weight_divides_load_and_ties_go_to_the_lowest_id() {
        let mut heavy = cell("us-b", "us-east-1", UP, 10);
        heavy.weight = 3;
        let cells = vec![
            cell("us-a", "us-east-1", UP, 10),
            heavy,
            cell("us-c", "us-east-1", UP, 10),
        ];
        // us-a: 2/10/1 = 0.2; us-b: 3/10/3 = 0.1; us-c: 1/10/1 = 0.1 → tie, us-b wins by id.
        let counts = HashMap::from([
            ("us-a".to_string(), 2),
            ("us-b".to_string(), 3),
            ("us-c".to_string(), 1),
        ]);
        let d = evaluate(
            &region("us-east-1"),
            &pro(),
            &cells,
            &counts,
            &Policy::new(),
        );
        assert_eq!(d.chosen.unwrap().id, "us-b");
        let rules: Vec<(String, Rule)> = d.rejected.into_iter().map(|(c, r)| (c.id, r)).collect();
        assert_eq!(
            rules,
            [
                ("us-a".to_string(), Rule::Load),
                ("us-c".to_string(), Rule::Load)
            ]
        );
    }

    #[test]
    fn every_other_cell_is_explained() {
        let mut draining = cell("us-b", "us-east-1", UP, 10);
        draining.state = DRAINING.into();
        let mut dedicated = cell("us-d", "us-east-1", UP, 10);
        dedicated.labels = r#"{"pool":"dedicated"}"#.into();
        let cells = vec![
            cell("eu-a", "eu-west-1", UP, 10),
            cell("us-a", "us-east-1", "DOWN", 10),
            draining,
            cell("us-c", "us-east-1", UP, 1),
            dedicated,
            cell("us-e", "us-east-1", UP, 10),
        ];
        let counts = HashMap::from([("us-c".to_string(), 1)]);
        let policy = Policy::from([(
            "enterprise".to_string(),
            ("pool".to_string(), "dedicated".to_string()),
        )]);
        let ent = Plan::parse("enterprise").unwrap();
        let d = evaluate(&region("us-east-1"), &ent, &cells, &counts, &policy);
        assert_eq!(d.chosen.as_ref().unwrap().id, "us-d");
        let rules: Vec<(&str, Rule)> = d
            .rejected
            .iter()
            .map(|(c, r)| (c.id.as_str(), *r))
            .collect();
        assert_eq!(
            rules,
            [
                ("eu-a", Rule::Region),
                ("us-a", Rule::Down),
                ("us-b", Rule::Draining),
                ("us-c", Rule::PlanIsolation),
                ("us-e", Rule::PlanIsolation),
            ]
        );
        // A plan without a policy may use any cell; the dedicated one is least loaded by id.
        let d = evaluate(&region("us-east-1"), &pro(), &cells, &counts, &policy);
        assert_eq!(d.chosen.unwrap().id, "us-d");
        // Where no cell carries the label, the requirement is waived.
        let d = evaluate(&region("eu-west-1"), &ent, &cells, &counts, &policy);
        assert_eq!(d.chosen.unwrap().id, "eu-a");
    }
}
