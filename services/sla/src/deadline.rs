//! Deadline arithmetic: a period ends at the end of a local day in the addressee's time zone.

use chrono::{DateTime, Days, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The end of the local day `period_days` calendar days after the local day of `registered_at`.
pub fn calendar_deadline(registered_at: DateTime<Utc>, zone: Tz, period_days: u32) -> Option<DateTime<Utc>> {
    let local_day = registered_at.with_timezone(&zone).date_naive();
    let last_day = local_day.checked_add_days(Days::new(u64::from(period_days)))?;
    let end = last_day.and_time(NaiveTime::from_hms_opt(23, 59, 59)?);
    // Russian zones have had no DST since 2014; `earliest` still handles a historical gap.
    zone.from_local_datetime(&end).earliest().map(|at| at.with_timezone(&Utc))
}

/// The time left as the cabinet shows it: "9 days 14 h 39 min / until 23:59 25.01.2025".
pub fn remaining(now: DateTime<Utc>, due: DateTime<Utc>, zone: Tz) -> String {
    let until = due.with_timezone(&zone).format("%H:%M %d.%m.%Y");
    let left = due - now;
    if left.num_seconds() < 0 {
        return format!("overdue / was due {until}");
    }
    let minutes = left.num_minutes();
    let (days, hours, minutes) = (minutes / (24 * 60), (minutes / 60) % 24, minutes % 60);
    let days = match days {
        1 => "1 day".to_owned(),
        n => format!("{n} days"),
    };
    format!("{days} {hours} h {minutes} min / until {until}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kamchatka_fast_track_example_from_the_domain() {
        // Received 23:18 15.01.2025 Kamchatka time (UTC+12) = 11:18 UTC.
        let received = Utc.with_ymd_and_hms(2025, 1, 15, 11, 18, 0).unwrap();
        let due = calendar_deadline(received, chrono_tz::Asia::Kamchatka, 10).unwrap();
        assert_eq!(due, Utc.with_ymd_and_hms(2025, 1, 25, 11, 59, 59).unwrap());
        assert_eq!(due.with_timezone(&chrono_tz::Asia::Kamchatka).to_rfc3339(), "2025-01-25T23:59:59+12:00");
    }

    #[test]
    fn the_same_instant_is_a_different_local_day_in_moscow() {
        let received = Utc.with_ymd_and_hms(2025, 1, 15, 11, 18, 0).unwrap();
        let due = calendar_deadline(received, chrono_tz::Europe::Moscow, 10).unwrap();
        assert_eq!(due, Utc.with_ymd_and_hms(2025, 1, 25, 20, 59, 59).unwrap());
    }

    #[test]
    fn remaining_reads_like_the_cabinet() {
        let zone = chrono_tz::Asia::Kamchatka;
        let due = Utc.with_ymd_and_hms(2025, 1, 25, 11, 59, 59).unwrap();
        let now = due - chrono::Duration::minutes(9 * 24 * 60 + 14 * 60 + 39) - chrono::Duration::seconds(59);
        assert_eq!(remaining(now, due, zone), "9 days 14 h 39 min / until 23:59 25.01.2025");
        assert!(remaining(due + chrono::Duration::hours(1), due, zone).starts_with("overdue"));
    }
}
