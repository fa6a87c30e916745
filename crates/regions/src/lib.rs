//! The 89 regions and their IANA zones, read from routing's seed (`deploy/seed/regions.toml`,
//! built into the binary). Events carry the zones their readers need; this table is where a
//! service finds a region's zone without asking routing (intake for the applicant's local time,
//! sla for an event without the addressee's zone and to check policies and calendars).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono_tz::Tz;
use serde::Deserialize;

const REGIONS_TOML: &str = include_str!("../../../deploy/seed/regions.toml");

#[derive(Deserialize)]
struct RegionsFile {
    regions: Vec<Region>,
}

#[derive(Deserialize)]
struct Region {
    code: String,
    time_zone: String,
}

static ZONES: LazyLock<BTreeMap<String, Tz>> = LazyLock::new(|| {
    let file: RegionsFile = toml::from_str(REGIONS_TOML).expect("the built-in regions are valid (unit test)");
    file.regions
        .into_iter()
        .map(|r| {
            let zone = r.time_zone.parse().expect("the built-in zones are IANA names (unit test)");
            (r.code, zone)
        })
        .collect()
});

/// The zone of region `code`, when it is one of the 89.
pub fn zone(code: &str) -> Option<Tz> {
    ZONES.get(code).copied()
}

pub fn is_known(code: &str) -> bool {
    ZONES.contains_key(code)
}

pub fn count() -> usize {
    ZONES.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_89_regions_have_a_zone_from_kaliningrad_to_kamchatka() {
        assert_eq!(count(), 89);
        assert_eq!(zone("41"), Some(chrono_tz::Asia::Kamchatka));
        assert_eq!(zone("39"), Some(chrono_tz::Europe::Kaliningrad));
        assert_eq!(zone("16"), Some(chrono_tz::Europe::Moscow));
        assert_eq!(zone("02"), Some(chrono_tz::Asia::Yekaterinburg));
        assert!(zone("00").is_none());
    }
}
