//! Breakout rooms: their names, who goes where, and when they end, as the main room's metadata
//! keeps them ([`MEETING_BREAKOUTS`]). Each breakout is a LiveKit room of its own whose metadata
//! names the main room ([`MEETING_BREAKOUT_OF`]), so the agent dispatched into it knows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most breakout rooms a meeting opens at once.
pub const MAX_BREAKOUTS: usize = 16;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakouts {
    /// The breakout rooms' names, in order (assignments name them by index).
    pub rooms: Vec<String>,
    /// Identity -> index into `rooms`.
    pub assignments: BTreeMap<String, usize>,
    /// When they close by themselves (Unix ms), if a timer was set.
    pub ends_at_ms: Option<u64>,
}

impl Breakouts {
    /// The main room's metadata value; anything malformed means none are open.
    pub fn from_value(value: &Value) -> Option<Self> {
        serde_json::from_value::<Self>(value.clone())
            .ok()
            .filter(|b| !b.rooms.is_empty() && b.assignments.values().all(|&i| i < b.rooms.len()))
    }

    /// The name of the main room's `index`-th breakout (1-based in the name).
    pub fn room_name(main: &str, index: usize) -> String {
        format!("{main}--breakout-{}", index + 1)
    }
}

/// How participants are spread over the rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Spread {
    /// Only those named in the request's assignments move.
    Manual,
    /// In turn, in the order of their identities.
    Even,
    /// In turn, in a shuffled order.
    Random,
}

/// Who goes to which of `count` rooms: `manual` first (indexes checked by the caller), then
/// `people` not named there by `spread`; `seed` shuffles for [`Spread::Random`].
pub fn assign(
    people: &[String],
    count: usize,
    spread: Spread,
    manual: &BTreeMap<String, usize>,
    seed: u64,
) -> BTreeMap<String, usize> {
    let mut out = manual.clone();
    if count == 0 || spread == Spread::Manual {
        return out;
    }
    let mut rest: Vec<&String> = people.iter().filter(|p| !manual.contains_key(*p)).collect();
    rest.sort();
    rest.dedup();
    if spread == Spread::Random {
        // Fisher-Yates with a small xorshift: fair enough to mix a meeting, no crate needed.
        let mut state = seed | 1;
        for i in (1..rest.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            rest.swap(i, (state % (i as u64 + 1)) as usize);
        }
    }
    // Continue the turn after the manual ones, so rooms stay even.
    let mut sizes = vec![0usize; count];
    for &i in manual.values() {
        if i < count {
            sizes[i] += 1;
        }
    }
    for person in rest {
        let smallest = (0..count)
            .min_by_key(|&i| (sizes[i], i))
            .expect("count > 0");
        sizes[smallest] += 1;
        out.insert(person.clone(), smallest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn people(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("p{i}")).collect()
    }

    #[test]
    fn even_spreads_evenly_after_the_manual_ones() {
        let manual = BTreeMap::from([("p0".to_string(), 1), ("boss".to_string(), 1)]);
        let got = assign(&people(7), 2, Spread::Even, &manual, 0);
        assert_eq!(got.len(), 8);
        let in_room = |r| got.values().filter(|&&i| i == r).count();
        assert_eq!((in_room(0), in_room(1)), (4, 4));
        assert_eq!(got["p0"], 1);
        assert_eq!(got["boss"], 1);
        assert_eq!(
            assign(&people(3), 2, Spread::Manual, &manual, 0),
            manual,
            "manual: only those named"
        );
    }

    #[test]
    fn random_is_a_permutation_spread_evenly() {
        let a = assign(&people(9), 3, Spread::Random, &BTreeMap::new(), 42);
        let b = assign(&people(9), 3, Spread::Random, &BTreeMap::new(), 7);
        assert_eq!(a.len(), 9);
        for r in 0..3 {
            assert_eq!(a.values().filter(|&&i| i == r).count(), 3);
        }
        assert_ne!(a, b, "another seed, another mix");
    }

    #[test]
    fn malformed_state_means_no_breakouts() {
        let ok = serde_json::json!({"rooms": ["m--breakout-1"], "assignments": {"ann": 0}});
        assert!(Breakouts::from_value(&ok).is_some());
        for bad in [
            serde_json::json!({"rooms": [], "assignments": {}}),
            serde_json::json!({"rooms": ["a"], "assignments": {"ann": 3}}),
            serde_json::json!("rooms"),
        ] {
            assert_eq!(Breakouts::from_value(&bad), None, "{bad}");
        }
        assert_eq!(Breakouts::room_name("standup", 0), "standup--breakout-1");
    }
}
