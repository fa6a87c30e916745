//! Deadline arithmetic: a period ends at the end of a local day in the addressee's time zone.
//! Pure functions over a [`Calendar`]; the clock and the store call them.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::calendar::Calendar;
use crate::policy::{Period, WarningPoint};

/// The end of the local day `period_days` calendar days after the local day of `registered_at`.
pub fn calendar_deadline(registered_at: DateTime<Utc>, zone: Tz, period_days: u32) -> Option<DateTime<Utc>> {
    let local_day = registered_at.with_timezone(&zone).date_naive();
    let last_day = local_day.checked_add_days(Days::new(u64::from(period_days)))?;
    end_of_local_day(last_day, zone)
}

/// 23:59:59 of `day` in `zone`, in UTC: the last second a deadline on that day allows.
pub fn end_of_local_day(day: NaiveDate, zone: Tz) -> Option<DateTime<Utc>> {
    local_time(day, NaiveTime::from_hms_opt(23, 59, 59)?, zone)
}

fn local_time(day: NaiveDate, time: NaiveTime, zone: Tz) -> Option<DateTime<Utc>> {
    // Russian zones have had no DST since 2014; `earliest` still handles a historical gap.
    zone.from_local_datetime(&day.and_time(time)).earliest().map(|at| at.with_timezone(&Utc))
}

/// The last local day of a period started at `started_at`: the start day is not counted;
/// calendar days simply add, working days follow the calendar; with `move_to_next_working_day`
/// a last day that is not a working day becomes the next working day.
pub fn last_day(
    started_at: DateTime<Utc>,
    zone: Tz,
    period: Period,
    move_to_next_working_day: bool,
    calendar: &Calendar,
) -> Option<NaiveDate> {
    let start_day = started_at.with_timezone(&zone).date_naive();
    let day = if period.working_days {
        calendar.add_working_days(start_day, period.days)?
    } else {
        start_day.checked_add_days(Days::new(u64::from(period.days)))?
    };
    if move_to_next_working_day { calendar.working_day_on_or_after(day) } else { Some(day) }
}

/// The deadline of a period started at `started_at` (see [`last_day`]).
pub fn due(
    started_at: DateTime<Utc>,
    zone: Tz,
    period: Period,
    move_to_next_working_day: bool,
    calendar: &Calendar,
) -> Option<DateTime<Utc>> {
    end_of_local_day(last_day(started_at, zone, period, move_to_next_working_day, calendar)?, zone)
}

/// The local days on which a paused clock stood still: from the local day the pause began up
/// to, not including, the local day it resumed (a pause begun and ended on one day counts
/// none). With `working_days`, only the working days of `calendar` among them count.
pub fn paused_days(
    paused_at: DateTime<Utc>,
    resumed_at: DateTime<Utc>,
    zone: Tz,
    working_days: bool,
    calendar: &Calendar,
) -> u32 {
    let first = paused_at.with_timezone(&zone).date_naive();
    let resumed = resumed_at.with_timezone(&zone).date_naive();
    let mut days = 0;
    let mut day = first;
    while day < resumed {
        if !working_days || calendar.is_working(day) {
            days += 1;
        }
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    days
}

/// The deadline after a pause: moved by the [`paused_days`] (working days of `calendar` when the
/// period is in working days), always to the end of a local day in `zone`. The exact length of
/// the pause does not matter, only the days it covered: a pause from Wednesday 16:00 to
/// Saturday 10:00 moves a deadline by three days, a few seconds across midnight by one, a pause
/// within one day by none.
pub fn resumed_due(
    due: DateTime<Utc>,
    paused_at: DateTime<Utc>,
    resumed_at: DateTime<Utc>,
    zone: Tz,
    working_days: bool,
    calendar: &Calendar,
) -> Option<DateTime<Utc>> {
    let days = paused_days(paused_at, resumed_at, zone, working_days, calendar);
    let last_day = due.with_timezone(&zone).date_naive();
    let moved = if working_days {
        calendar.add_working_days(last_day, days)?
    } else {
        last_day.checked_add_days(Days::new(u64::from(days)))?
    };
    end_of_local_day(moved, zone)
}

/// The executor's stage deadline when the coordinator set none: `share_percent` of the answer
/// period from its start, at the end of that local day, never after the answer deadline.
pub fn execution_due(
    started_at: DateTime<Utc>,
    answer_due: DateTime<Utc>,
    share_percent: u32,
    zone: Tz,
) -> Option<DateTime<Utc>> {
    let span = answer_due - started_at;
    let at = started_at + span * i32::try_from(share_percent.min(100)).ok()? / 100;
    let end = end_of_local_day(at.with_timezone(&zone).date_naive(), zone)?;
    Some(end.min(answer_due))
}

/// When warning `point` falls for a deadline `due` whose period spanned `span` when armed.
/// `None` when the point does not exist (no such working day in the calendar).
pub fn warning_at(
    point: WarningPoint,
    due: DateTime<Utc>,
    span: chrono::Duration,
    zone: Tz,
    calendar: &Calendar,
) -> Option<DateTime<Utc>> {
    match point {
        WarningPoint::PercentOfPeriod { percent_of_period } => {
            let rest = 100 - i32::try_from(percent_of_period.min(100)).ok()?;
            Some(due - span * rest / 100)
        }
        WarningPoint::WorkingDaysBefore { working_days_before } => {
            let last_day = due.with_timezone(&zone).date_naive();
            let day = calendar.sub_working_days(last_day, working_days_before)?;
            // The start of the working day, so that a person on duty reads it the same day.
            local_time(day, NaiveTime::from_hms_opt(9, 0, 0)?, zone)
        }
    }
}

/// When a deadline is overdue: the first instant after its last second.
pub fn overdue_at(due: DateTime<Utc>) -> DateTime<Utc> {
    due + chrono::Duration::seconds(1)
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

    fn calendar() -> Calendar {
        let years = crate::calendar::embedded();
        Calendar::build(years.iter().filter(|y| y.region == "*"))
    }

    fn regional(region: &str) -> Calendar {
        let years = crate::calendar::embedded();
        Calendar::build(years.iter().filter(|y| y.region == "*" || y.region == region))
    }

    #[test]
    fn the_worked_example_is_not_moved_off_saturday() {
        let received = Utc.with_ymd_and_hms(2025, 1, 15, 11, 18, 0).unwrap();
        let at = due(received, chrono_tz::Asia::Kamchatka, Period::calendar(10), false, &calendar()).unwrap();
        assert_eq!(at, Utc.with_ymd_and_hms(2025, 1, 25, 11, 59, 59).unwrap());
    }

    #[test]
    fn the_next_working_day_flag_moves_a_saturday_deadline_to_monday() {
        let received = Utc.with_ymd_and_hms(2025, 1, 15, 11, 18, 0).unwrap();
        let at = due(received, chrono_tz::Asia::Kamchatka, Period::calendar(10), true, &calendar()).unwrap();
        assert_eq!(at.with_timezone(&chrono_tz::Asia::Kamchatka).to_rfc3339(), "2025-01-27T23:59:59+12:00");
    }

    #[test]
    fn working_days_across_the_new_year_and_a_day_transfer() {
        let zone = chrono_tz::Europe::Moscow;
        // Registered Wednesday 25.12.2024 12:00 MSK; 5 working days: 26, 27, 28 (working
        // Saturday), then Jan 9, 10 (Dec 30–31 and Jan 1–8 off).
        let registered = Utc.with_ymd_and_hms(2024, 12, 25, 9, 0, 0).unwrap();
        let at = due(registered, zone, Period::working(5), false, &calendar()).unwrap();
        assert_eq!(at.with_timezone(&zone).to_rfc3339(), "2025-01-10T23:59:59+03:00");
        // Across the 2025 November transfer: Friday 31.10.2025 + 2 working days → Sat Nov 1
        // works, Mon Nov 3 and Tue Nov 4 are off → Wed Nov 5.
        let registered = Utc.with_ymd_and_hms(2025, 10, 31, 9, 0, 0).unwrap();
        let at = due(registered, zone, Period::working(2), false, &calendar()).unwrap();
        assert_eq!(at.with_timezone(&zone).date_naive(), NaiveDate::from_ymd_opt(2025, 11, 5).unwrap());
    }

    #[test]
    fn a_regional_holiday_lengthens_a_working_day_period_in_tatarstan_only() {
        // Registered Wednesday 05.11.2025; 1 working day. Nov 6 is Tatarstan's Constitution Day.
        let registered = Utc.with_ymd_and_hms(2025, 11, 5, 9, 0, 0).unwrap();
        let moscow = due(registered, chrono_tz::Europe::Moscow, Period::working(1), false, &regional("77")).unwrap();
        let kazan = due(registered, chrono_tz::Europe::Moscow, Period::working(1), false, &regional("16")).unwrap();
        assert_eq!(moscow.with_timezone(&chrono_tz::Europe::Moscow).date_naive().to_string(), "2025-11-06");
        assert_eq!(kazan.with_timezone(&chrono_tz::Europe::Moscow).date_naive().to_string(), "2025-11-07");
    }

    fn moscow(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
        chrono_tz::Europe::Moscow.with_ymd_and_hms(y, m, d, h, min, s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_pause_from_wednesday_afternoon_to_saturday_morning_moves_three_days() {
        let zone = chrono_tz::Europe::Moscow;
        // Due Monday 17.03.2025 23:59:59; paused Wednesday 05.03 16:00, resumed Saturday 08.03
        // 10:00 (a holiday, which a calendar-day period counts like any day).
        let due_at = moscow(2025, 3, 17, 23, 59, 59);
        let (paused, resumed) = (moscow(2025, 3, 5, 16, 0, 0), moscow(2025, 3, 8, 10, 0, 0));
        assert_eq!(paused_days(paused, resumed, zone, false, &calendar()), 3);
        let moved = resumed_due(due_at, paused, resumed, zone, false, &calendar()).unwrap();
        assert_eq!(moved.with_timezone(&zone).to_rfc3339(), "2025-03-20T23:59:59+03:00");
        assert_eq!(moved.timestamp_subsec_nanos(), 0, "no fractional seconds");
    }

    #[test]
    fn in_working_days_only_the_working_days_of_the_pause_count() {
        let zone = chrono_tz::Europe::Moscow;
        // Paused Friday 14.03.2025 16:00, resumed Tuesday 18.03 10:00: Friday and Monday stood
        // still (the weekend was not working time anyway), so the deadline moves two working
        // days: Wednesday 19.03 → Friday 21.03.
        let due_at = moscow(2025, 3, 19, 23, 59, 59);
        let (paused, resumed) = (moscow(2025, 3, 14, 16, 0, 0), moscow(2025, 3, 18, 10, 0, 0));
        assert_eq!(paused_days(paused, resumed, zone, true, &calendar()), 2);
        assert_eq!(paused_days(paused, resumed, zone, false, &calendar()), 4);
        let moved = resumed_due(due_at, paused, resumed, zone, true, &calendar()).unwrap();
        assert_eq!(moved.with_timezone(&zone).to_rfc3339(), "2025-03-21T23:59:59+03:00");
        // Wednesday 16:00 to Saturday 10:00 in working days: Wednesday, Thursday, Friday. From
        // Wednesday 19.03 that is Monday 24.03, past the weekend.
        let (paused, resumed) = (moscow(2025, 3, 5, 16, 0, 0), moscow(2025, 3, 8, 10, 0, 0));
        let due_at = moscow(2025, 3, 19, 23, 59, 59);
        // 07.03 is a working (shortened) day before the 8 March holiday.
        assert_eq!(paused_days(paused, resumed, zone, true, &calendar()), 3);
        let moved = resumed_due(due_at, paused, resumed, zone, true, &calendar()).unwrap();
        assert_eq!(moved.with_timezone(&zone).to_rfc3339(), "2025-03-24T23:59:59+03:00");
    }

    #[test]
    fn a_few_seconds_across_midnight_move_one_day_and_stay_an_end_of_day() {
        let zone = chrono_tz::Asia::Kamchatka;
        let due_at = Utc.with_ymd_and_hms(2025, 1, 25, 11, 59, 59).unwrap();
        // 23:59:58 to 00:00:01 Kamchatka time, with sub-second parts on both ends.
        let paused = zone.with_ymd_and_hms(2025, 1, 17, 23, 59, 58).unwrap().with_timezone(&Utc)
            + chrono::Duration::microseconds(123_456);
        let resumed = paused + chrono::Duration::seconds(3);
        let moved = resumed_due(due_at, paused, resumed, zone, false, &calendar()).unwrap();
        assert_eq!(moved.with_timezone(&zone).to_rfc3339(), "2025-01-26T23:59:59+12:00");
        assert_eq!(moved.timestamp_subsec_nanos(), 0);
    }

    #[test]
    fn a_pause_within_one_day_moves_nothing() {
        let zone = chrono_tz::Asia::Kamchatka;
        let due_at = Utc.with_ymd_and_hms(2025, 1, 25, 11, 59, 59).unwrap();
        let paused = zone.with_ymd_and_hms(2025, 1, 17, 0, 0, 1).unwrap().with_timezone(&Utc);
        let resumed = zone.with_ymd_and_hms(2025, 1, 17, 23, 59, 0).unwrap().with_timezone(&Utc);
        assert_eq!(paused_days(paused, resumed, zone, false, &calendar()), 0);
        assert_eq!(resumed_due(due_at, paused, resumed, zone, false, &calendar()), Some(due_at));
        assert_eq!(resumed_due(due_at, paused, resumed, zone, true, &calendar()), Some(due_at));
    }

    #[test]
    fn warnings_fall_before_the_deadline() {
        let zone = chrono_tz::Asia::Kamchatka;
        let received = Utc.with_ymd_and_hms(2025, 1, 15, 11, 18, 0).unwrap();
        let due_at = Utc.with_ymd_and_hms(2025, 1, 25, 11, 59, 59).unwrap();
        let span = due_at - received;
        let pct = warning_at(WarningPoint::PercentOfPeriod { percent_of_period: 75 }, due_at, span, zone, &calendar());
        assert_eq!(pct.unwrap(), due_at - span / 4);
        // One working day before Saturday 25.01 is Friday 24.01, at 09:00 local.
        let wd =
            warning_at(WarningPoint::WorkingDaysBefore { working_days_before: 1 }, due_at, span, zone, &calendar());
        assert_eq!(wd.unwrap().with_timezone(&zone).to_rfc3339(), "2025-01-24T09:00:00+12:00");
    }

    #[test]
    fn the_default_execution_deadline_is_a_share_of_the_period() {
        let zone = chrono_tz::Europe::Moscow;
        let start = Utc.with_ymd_and_hms(2025, 3, 3, 9, 0, 0).unwrap();
        let answer = due(start, zone, Period::calendar(10), false, &calendar()).unwrap();
        let execution = execution_due(start, answer, 70, zone).unwrap();
        assert!(execution < answer);
        assert_eq!(execution.with_timezone(&zone).to_rfc3339(), "2025-03-10T23:59:59+03:00");
    }
}
