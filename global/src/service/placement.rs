//! The placement rule: a cell of the asked region that is UP and has room,
//! least loaded first; never outside the region.

use std::collections::{BTreeSet, HashMap};

use shared::ids::Region;
use shared::{Error, Result};

use crate::entity::cell;
use crate::service::cells::UP;

pub fn choose(
    region: &Region,
    cells: &[cell::Model],
    counts: &HashMap<String, i64>,
) -> Result<cell::Model> {
    let in_region: Vec<&cell::Model> = cells
        .iter()
        .filter(|c| c.region == region.as_str())
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
    let up: Vec<&cell::Model> = in_region
        .iter()
        .copied()
        .filter(|c| c.status == UP)
        .collect();
    if up.is_empty() {
        let states: Vec<String> = in_region
            .iter()
            .map(|c| format!("{} is {}", c.id, c.status))
            .collect();
        return Err(Error::Unavailable(format!(
            "no cell in region {region} is UP ({}); retry when one is back",
            states.join(", ")
        )));
    }
    up.iter()
        .copied()
        .filter(|c| load(c) < c.capacity)
        .min_by(|a, b| {
            // Least loaded by share of capacity, then by count, then by id for a stable choice.
            let fa = load(a) as f64 / a.capacity as f64;
            let fb = load(b) as f64 / b.capacity as f64;
            fa.total_cmp(&fb).then(load(a).cmp(&load(b))).then(a.id.cmp(&b.id))
        })
        .cloned()
        .ok_or_else(|| {
            let full: Vec<String> = up.iter().map(|c| format!("{}: {}/{}", c.id, load(c), c.capacity)).collect();
            Error::Unavailable(format!(
                "every UP cell in region {region} is at capacity ({}); add a cell or raise capacity",
                full.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
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
        }
    }

    fn region(s: &str) -> Region {
        Region::parse(s).unwrap()
    }

    #[test]
    fn picks_least_loaded_up_cell_in_region() {
        let cells = vec![
            cell("us-a", "us-east-1", UP, 10),
            cell("us-b", "us-east-1", UP, 10),
            cell("eu-a", "eu-west-1", UP, 10),
        ];
        let counts = HashMap::from([("us-a".to_string(), 5), ("us-b".to_string(), 2)]);
        assert_eq!(
            choose(&region("us-east-1"), &cells, &counts).unwrap().id,
            "us-b"
        );
        assert_eq!(
            choose(&region("eu-west-1"), &cells, &counts).unwrap().id,
            "eu-a"
        );
    }

    #[test]
    fn never_leaves_the_region() {
        let cells = vec![
            cell("us-a", "us-east-1", "DOWN", 10),
            cell("eu-a", "eu-west-1", UP, 10),
        ];
        let e = choose(&region("us-east-1"), &cells, &HashMap::new()).unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.to_string().contains("us-a is DOWN"));
    }

    #[test]
    fn unknown_region_lists_valid_ones() {
        let cells = vec![
            cell("us-a", "us-east-1", UP, 10),
            cell("eu-a", "eu-west-1", UP, 10),
        ];
        let e = choose(&region("ap-south-1"), &cells, &HashMap::new()).unwrap_err();
        assert_eq!(e.code(), Code::BadUserInput);
        assert!(e.to_string().contains("eu-west-1, us-east-1"), "{e}");
    }

    #[test]
    fn full_region_is_unavailable() {
        let cells = vec![cell("us-a", "us-east-1", UP, 1)];
        let counts = HashMap::from([("us-a".to_string(), 1)]);
        let e = choose(&region("us-east-1"), &cells, &counts).unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.to_string().contains("at capacity"), "{e}");
    }
}
