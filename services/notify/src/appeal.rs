//! What notify knows of an appeal, gathered from its events, and the placeholder values that
//! knowledge gives its messages.

use chrono::Offset;
use chrono_tz::Tz;

use crate::template::Values;

#[derive(Clone, Debug, Default)]
pub struct Appeal {
    pub appeal_id: String,
    pub number: i64,
    pub applicant_name: String,
    pub applicant_email: String,
    pub category_id: String,
    /// The classifier's names as the events carried them; empty when no event named them.
    pub category_name: String,
    pub subcategory_name: String,
    pub fact_name: String,
    pub region_code: String,
    /// The IANA zone of the applicant's region.
    pub applicant_time_zone: String,
    pub organization_id: String,
    pub organization_name: String,
    /// The IANA zone of the addressee's region, once routing named it.
    pub time_zone: String,
    pub created_at: i64,
    pub deadline: Option<i64>,
    pub execution_due: Option<i64>,
    pub status: String,
    pub received: bool,
}

/// Who reads a message: the time it shows is in their zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// The applicant: the zone of the applicant's region, said with every time shown, since the
    /// applicant may live in another zone than the organization that answers.
    Applicant,
    /// The organization's staff: the organization's own zone, as in its cabinet.
    Organization,
}

/// How a time shown to the applicant names its zone.
fn zone_said(zone: Tz, offset_seconds: i32, guessed: bool) -> String {
    let sign = if offset_seconds < 0 { '-' } else { '+' };
    let (hours, minutes) = (offset_seconds.abs() / 3600, offset_seconds.abs() % 3600 / 60);
    let utc = if minutes == 0 { format!("UTC{sign}{hours}") } else { format!("UTC{sign}{hours}:{minutes:02}") };
    if guessed && zone == Tz::Europe__Moscow {
        format!("по московскому времени ({utc})")
    } else {
        format!("по местному времени ({utc})")
    }
}

impl Appeal {
    /// The zone times are shown in for `reader`, and whether it is a guess (Moscow, for want
    /// of the zone the reader lives in).
    fn zone(&self, reader: Reader) -> (Tz, bool) {
        let named = match reader {
            Reader::Applicant => self.applicant_time_zone.parse().ok().or_else(|| pos_regions::zone(&self.region_code)),
            // Staff mail goes after routing named the organization's zone.
            Reader::Organization => self.time_zone.parse().ok(),
        };
        named.map_or((Tz::Europe__Moscow, true), |zone| (zone, false))
    }

    /// A moment as `reader` reads it: local time, the zone said to the applicant (and to staff
    /// only when the zone is a guess).
    pub fn local(&self, micros: Option<i64>, reader: Reader) -> String {
        let (zone, guessed) = self.zone(reader);
        micros
            .filter(|m| *m > 0)
            .map(|m| {
                let local = pos_platform::db::from_micros(m).with_timezone(&zone);
                let shown = local.format("%d.%m.%Y %H:%M");
                match reader {
                    Reader::Applicant => {
                        format!("{shown} {}", zone_said(zone, local.offset().fix().local_minus_utc(), guessed))
                    }
                    Reader::Organization if guessed => format!("{shown} (МСК)"),
                    Reader::Organization => shown.to_string(),
                }
            })
            .unwrap_or_default()
    }

    /// Every placeholder's value for `reader`. What is not known is left empty: a line whose
    /// every placeholder is empty is left out, others show "—" (see [`crate::template`]). The
    /// classifier is shown by its names only; an id is no word for a person.
    pub fn values(&self, reader: Reader) -> Values {
        let mut values = Values::default();
        let number = if self.number > 0 { self.number.to_string() } else { String::new() };
        values.set("number", number.clone());
        values.set("registration_number", number);
        values.set("category", self.category_name.clone());
        values.set("subcategory", self.subcategory_name.clone());
        values.set("fact", self.fact_name.clone());
        values.set("organization", self.organization_name.clone());
        values.set("created_at", self.local(Some(self.created_at), reader));
        values.set("registration_date", self.local(Some(self.created_at), reader));
        values.set("deadline", self.local(self.deadline, reader));
        values.set("execution_due", self.local(self.execution_due, reader));
        values.set("status", self.status.clone());
        values.set("applicant_name", self.applicant_name.clone());
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(text: &str) -> Option<i64> {
        Some(pos_platform::db::to_micros(chrono::DateTime::parse_from_rfc3339(text).unwrap().to_utc()))
    }

    #[test]
    fn the_applicant_reads_the_time_of_their_region_with_its_zone_said() {
        let kamchatka = Appeal { applicant_time_zone: "Asia/Kamchatka".into(), ..Appeal::default() };
        // Seed 003: received 23:18 15.01.2025 in Kamchatka.
        let at = micros("2025-01-15T11:18:00Z");
        assert_eq!(kamchatka.local(at, Reader::Applicant), "15.01.2025 23:18 по местному времени (UTC+12)");
        // An event without the zone: the region's, from the table of regions.
        let older = Appeal { region_code: "41".into(), ..Appeal::default() };
        assert_eq!(older.local(at, Reader::Applicant), "15.01.2025 23:18 по местному времени (UTC+12)");
        // Neither: Moscow, said so.
        assert_eq!(Appeal::default().local(at, Reader::Applicant), "15.01.2025 14:18 по московскому времени (UTC+3)");
        let moscow = Appeal { applicant_time_zone: "Europe/Moscow".into(), ..Appeal::default() };
        assert_eq!(moscow.local(at, Reader::Applicant), "15.01.2025 14:18 по местному времени (UTC+3)");
    }

    #[test]
    fn staff_read_their_organizations_time() {
        let appeal = Appeal {
            applicant_time_zone: "Asia/Kamchatka".into(),
            time_zone: "Europe/Moscow".into(),
            ..Appeal::default()
        };
        let at = micros("2025-01-25T11:59:00Z");
        assert_eq!(appeal.local(at, Reader::Organization), "25.01.2025 14:59");
        assert_eq!(appeal.local(at, Reader::Applicant), "25.01.2025 23:59 по местному времени (UTC+12)");
        assert_eq!(Appeal::default().local(at, Reader::Organization), "25.01.2025 14:59 (МСК)");
        assert_eq!(Appeal::default().local(None, Reader::Organization), "");
    }

    #[test]
    fn the_classifier_is_shown_by_name_never_by_id() {
        let appeal = Appeal { category_id: "education".into(), ..Appeal::default() };
        assert_eq!(appeal.values(Reader::Organization).get("category"), "—");
        let named = Appeal { category_name: "Образование".into(), ..appeal };
        assert_eq!(named.values(Reader::Applicant).get("category"), "Образование");
    }
}
