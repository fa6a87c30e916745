//! Production calendars: which local days are working days in a region.
//!
//! A year is data ([`CalendarYear`]): holidays, the government's transfers of days off, and
//! shortened pre-holiday days; the federal year and a region's own year of the same number
//! combine into a [`Calendar`]. Everything here is pure: the store loads the years, the
//! deadline arithmetic asks the calendar.

use std::collections::{BTreeSet, HashSet};

use chrono::{Datelike, Days, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

/// The built-in calendars, from `deploy/seed/sla/calendars.toml`.
pub const CALENDARS_TOML: &str = include_str!("../../../deploy/seed/sla/calendars.toml");

/// The region code of the federal calendar.
pub const FEDERAL: &str = "*";

/// One year of a calendar, federal (`region = "*"`) or regional.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarYear {
    pub region: String,
    pub year: i32,
    /// The act that fixed the year, for people checking the data.
    #[serde(default)]
    pub decree: String,
    #[serde(default)]
    pub holidays: Vec<Holiday>,
    #[serde(default)]
    pub transfers: Vec<Transfer>,
    #[serde(default)]
    pub shortened: Vec<NaiveDate>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    pub date: NaiveDate,
    pub name: String,
}

/// A day off moved from `from` to `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarsFile {
    years: Vec<CalendarYear>,
}

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("calendars are not valid TOML: {0}")]
    Parse(#[from] Box<toml::de::Error>),
    #[error("{0}")]
    Invalid(String),
}

/// Parses and checks calendar years from TOML.
pub fn parse(toml_text: &str) -> Result<Vec<CalendarYear>, CalendarError> {
    let file: CalendarsFile = toml::from_str(toml_text).map_err(Box::new)?;
    for year in &file.years {
        year.validate().map_err(CalendarError::Invalid)?;
    }
    Ok(file.years)
}

/// The built-in years.
pub fn embedded() -> Vec<CalendarYear> {
    parse(CALENDARS_TOML).expect("the built-in calendars are valid (checked by a unit test)")
}

impl CalendarYear {
    /// Every date belongs to the year; a region is `*` or two digits.
    pub fn validate(&self) -> Result<(), String> {
        let name = format!("calendar {} {}", self.region, self.year);
        if self.region != FEDERAL && !(self.region.len() == 2 && self.region.chars().all(|c| c.is_ascii_digit())) {
            return Err(format!("{name}: region must be \"*\" or a two-digit code"));
        }
        if !(2000..=2100).contains(&self.year) {
            return Err(format!("{name}: year out of range"));
        }
        let dates = self
            .holidays
            .iter()
            .map(|h| h.date)
            .chain(self.transfers.iter().flat_map(|t| [t.from, t.to]))
            .chain(self.shortened.iter().copied());
        for date in dates {
            // A transfer may take a day off from the previous year's January only in theory;
            // the decrees never do, so a date outside the year is a typo.
            if date.year() != self.year {
                return Err(format!("{name}: {date} is not in {}", self.year));
            }
        }
        for transfer in &self.transfers {
            if transfer.from == transfer.to {
                return Err(format!("{name}: transfer from {} to itself", transfer.from));
            }
        }
        Ok(())
    }
}

/// What a day is in a region's calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DayKind {
    Working,
    /// A working day one hour shorter (before a holiday).
    Shortened,
    /// Saturday or Sunday.
    Weekend,
    /// A holiday, or a day off moved onto a weekday.
    DayOff,
    /// A weekend day made a working day by a transfer.
    WorkingWeekend,
}

impl DayKind {
    pub fn is_working(self) -> bool {
        match self {
            DayKind::Working | DayKind::Shortened | DayKind::WorkingWeekend => true,
            DayKind::Weekend | DayKind::DayOff => false,
        }
    }
}

/// The combined calendar of one region (federal years plus the region's own).
#[derive(Clone, Debug, Default)]
pub struct Calendar {
    off: HashSet<NaiveDate>,
    on: HashSet<NaiveDate>,
    shortened: HashSet<NaiveDate>,
    years: BTreeSet<i32>,
}

impl Calendar {
    /// Combines `years`: the federal years define which years are covered; regional years add
    /// their holidays and transfers.
    pub fn build<'a>(years: impl IntoIterator<Item = &'a CalendarYear>) -> Calendar {
        let mut calendar = Calendar::default();
        let mut holidays = HashSet::new();
        let years: Vec<&CalendarYear> = years.into_iter().collect();
        for year in &years {
            if year.region == FEDERAL {
                calendar.years.insert(year.year);
            }
            holidays.extend(year.holidays.iter().map(|h| h.date));
            calendar.off.extend(year.holidays.iter().map(|h| h.date));
            calendar.shortened.extend(year.shortened.iter().copied());
        }
        for year in &years {
            for transfer in &year.transfers {
                calendar.off.insert(transfer.to);
                // A holiday on a weekend stays a day off; only an ordinary weekend day works.
                if !holidays.contains(&transfer.from) {
                    calendar.on.insert(transfer.from);
                }
            }
        }
        calendar.on.retain(|day| !calendar.off.contains(day));
        calendar
    }

    /// Whether the federal calendar of `year` is loaded; outside it only weekends are known.
    pub fn covers(&self, year: i32) -> bool {
        self.years.contains(&year)
    }

    pub fn covered_years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.iter().copied()
    }

    pub fn day_kind(&self, day: NaiveDate) -> DayKind {
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        if self.off.contains(&day) {
            DayKind::DayOff
        } else if self.on.contains(&day) {
            DayKind::WorkingWeekend
        } else if weekend {
            DayKind::Weekend
        } else if self.shortened.contains(&day) {
            DayKind::Shortened
        } else {
            DayKind::Working
        }
    }

    pub fn is_working(&self, day: NaiveDate) -> bool {
        self.day_kind(day).is_working()
    }

    /// The `n`-th working day after `day` (`day` itself not counted); `day` for `n = 0`.
    pub fn add_working_days(&self, day: NaiveDate, n: u32) -> Option<NaiveDate> {
        let mut current = day;
        let mut left = n;
        while left > 0 {
            current = current.checked_add_days(Days::new(1))?;
            if self.is_working(current) {
                left -= 1;
            }
        }
        Some(current)
    }

    /// `day` when it is a working day, else the next one.
    pub fn working_day_on_or_after(&self, day: NaiveDate) -> Option<NaiveDate> {
        let mut current = day;
        // The longest run of days off (New Year) is 12 days; a year of them is a data error.
        for _ in 0..366 {
            if self.is_working(current) {
                return Some(current);
            }
            current = current.checked_add_days(Days::new(1))?;
        }
        None
    }

    /// The `n`-th working day before `day` (`day` not counted).
    pub fn sub_working_days(&self, day: NaiveDate, n: u32) -> Option<NaiveDate> {
        let mut current = day;
        let mut left = n;
        while left > 0 {
            current = current.checked_sub_days(Days::new(1))?;
            if self.is_working(current) {
                left -= 1;
            }
        }
        Some(current)
    }

    /// Working days in `year` (for checking data against the published totals).
    pub fn working_days_in(&self, year: i32) -> usize {
        let Some(mut day) = NaiveDate::from_ymd_opt(year, 1, 1) else { return 0 };
        let mut count = 0;
        while day.year() == year {
            if self.is_working(day) {
                count += 1;
            }
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn calendar(region: &str) -> Calendar {
        let years = embedded();
        Calendar::build(years.iter().filter(|y| y.region == FEDERAL || y.region == region))
    }

    #[test]
    fn the_built_in_years_parse_and_cover_2024_to_2027() {
        let federal = calendar(FEDERAL);
        assert_eq!(federal.covered_years().collect::<Vec<_>>(), vec![2024, 2025, 2026, 2027]);
    }

    #[test]
    fn yearly_totals_match_the_published_production_calendars() {
        // Working days per year as published (Consultant): 2024 — 248, 2025 — 247, 2026 — 247,
        // 2027 — 247 (five-day week).
        let federal = calendar(FEDERAL);
        assert_eq!(federal.working_days_in(2024), 248);
        assert_eq!(federal.working_days_in(2025), 247);
        assert_eq!(federal.working_days_in(2026), 247);
        assert_eq!(federal.working_days_in(2027), 247);
    }

    #[test]
    fn new_year_holidays_transfers_and_working_saturdays() {
        let c = calendar(FEDERAL);
        for day in 1..=8 {
            assert!(!c.is_working(d(2025, 1, day)), "2025-01-{day:02}");
        }
        assert_eq!(c.day_kind(d(2025, 1, 9)), DayKind::Working);
        assert_eq!(c.day_kind(d(2025, 5, 2)), DayKind::DayOff, "moved from Jan 4");
        assert_eq!(c.day_kind(d(2025, 12, 31)), DayKind::DayOff, "moved from Jan 5");
        assert_eq!(c.day_kind(d(2025, 11, 1)), DayKind::WorkingWeekend);
        assert_eq!(c.day_kind(d(2025, 11, 3)), DayKind::DayOff);
        assert_eq!(c.day_kind(d(2025, 3, 7)), DayKind::Shortened);
        for saturday in [d(2024, 4, 27), d(2024, 11, 2), d(2024, 12, 28)] {
            assert_eq!(c.day_kind(saturday), DayKind::WorkingWeekend, "{saturday}");
        }
        assert_eq!(c.day_kind(d(2026, 1, 9)), DayKind::DayOff);
        assert_eq!(c.day_kind(d(2027, 2, 20)), DayKind::WorkingWeekend);
    }

    #[test]
    fn working_days_across_the_new_year_holidays() {
        let c = calendar(FEDERAL);
        // Friday 27.12.2024 + 2 working days: Sat 28th works (transfer), Mon 30th and Tue 31st
        // are off, Jan 1–8 off: the 2nd working day is Thursday 09.01.2025.
        assert_eq!(c.add_working_days(d(2024, 12, 27), 1), Some(d(2024, 12, 28)));
        assert_eq!(c.add_working_days(d(2024, 12, 27), 2), Some(d(2025, 1, 9)));
        assert_eq!(c.add_working_days(d(2024, 12, 27), 3), Some(d(2025, 1, 10)));
    }

    #[test]
    fn a_regional_holiday_counts_in_tatarstan_and_not_in_moscow() {
        let moscow = calendar("77");
        let tatarstan = calendar("16");
        let bashkortostan = calendar("02");
        let republic_day = d(2025, 10, 11);
        assert!(bashkortostan.day_kind(republic_day) == DayKind::DayOff);
        // Constitution Day of Tatarstan, Thursday 06.11.2025.
        assert!(moscow.is_working(d(2025, 11, 6)));
        assert!(!tatarstan.is_working(d(2025, 11, 6)));
        // Wednesday 05.11.2025 + 1 working day.
        assert_eq!(moscow.add_working_days(d(2025, 11, 5), 1), Some(d(2025, 11, 6)));
        assert_eq!(tatarstan.add_working_days(d(2025, 11, 5), 1), Some(d(2025, 11, 7)));
        // Курбан-байрам, Friday 06.06.2025, in both republics.
        assert!(!tatarstan.is_working(d(2025, 6, 6)) && !bashkortostan.is_working(d(2025, 6, 6)));
        assert!(moscow.is_working(d(2025, 6, 6)));
    }

    #[test]
    fn next_working_day_and_counting_back() {
        let c = calendar(FEDERAL);
        assert_eq!(c.working_day_on_or_after(d(2025, 1, 25)), Some(d(2025, 1, 27)));
        assert_eq!(c.working_day_on_or_after(d(2025, 1, 1)), Some(d(2025, 1, 9)));
        assert_eq!(c.sub_working_days(d(2025, 1, 9), 1), Some(d(2024, 12, 28)));
    }

    #[test]
    fn bad_data_is_refused() {
        let text = "[[years]]\nregion = \"*\"\nyear = 2025\nholidays = [{ date = \"2024-01-01\", name = \"x\" }]\n";
        assert!(matches!(parse(text), Err(CalendarError::Invalid(_))));
        let text = "[[years]]\nregion = \"Moscow\"\nyear = 2025\n";
        assert!(matches!(parse(text), Err(CalendarError::Invalid(_))));
    }
}
