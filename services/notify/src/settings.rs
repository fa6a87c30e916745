//! The organization admin's notification configuration: notifications by type with their
//! recipients and templates, quiet hours and the daily digest, in the organization's local time.

use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use pos_platform::auth::Role;

use crate::texts;

/// A notification's type, as the admin picks it; stored by its snake-case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum Kind {
    MessageArrived,
    DeadlineWarning,
    Overdue,
    ApprovalRequested,
    ReturnedByApplicant,
}

impl Kind {
    pub const ALL: &'static [Kind] = <Kind as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<Kind> {
        text.parse().ok()
    }

    pub fn from_proto(value: i32) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|kind| kind.to_proto() == value)
    }

    pub fn to_proto(self) -> i32 {
        self.profile().wire as i32
    }

    /// Urgent mail ignores quiet hours and the digest: an overdue appeal cannot wait for morning.
    pub fn urgent(self) -> bool {
        self.profile().urgent
    }

    /// Everything that differs between the types, in one place.
    fn profile(self) -> Profile {
        use pos_proto::v1::NotificationType as Wire;
        match self {
            Kind::MessageArrived => Profile {
                wire: Wire::MessageArrived,
                urgent: false,
                default_roles: &[],
                default: include_str!("../templates/organization/message_arrived.txt"),
            },
            Kind::DeadlineWarning => Profile {
                wire: Wire::DeadlineWarning,
                urgent: false,
                default_roles: &[ASSIGNEE, "coordinator"],
                default: include_str!("../templates/organization/deadline_warning.txt"),
            },
            Kind::Overdue => Profile {
                wire: Wire::Overdue,
                urgent: true,
                default_roles: &["head", "curator"],
                default: include_str!("../templates/organization/overdue.txt"),
            },
            Kind::ApprovalRequested => Profile {
                wire: Wire::ApprovalRequested,
                urgent: false,
                default_roles: &["head", "approver"],
                default: include_str!("../templates/organization/approval_requested.txt"),
            },
            Kind::ReturnedByApplicant => Profile {
                wire: Wire::ReturnedByApplicant,
                urgent: false,
                default_roles: &["coordinator", "curator"],
                default: include_str!("../templates/organization/returned_by_applicant.txt"),
            },
        }
    }
}

/// What a [`Kind`] is.
struct Profile {
    wire: pos_proto::v1::NotificationType,
    urgent: bool,
    /// Whom a new organization's notification of this type asks; none: the organization's own
    /// address, as the seed's "message arrived" does.
    default_roles: &'static [&'static str],
    /// A new organization's notification of this type (its admin edits it from then on): a
    /// template file, its name as the subject (see [`texts::Text`]).
    default: &'static str,
}

/// The role a rule names for the appeal's current assignee.
pub const ASSIGNEE: &str = "assignee";

/// The roles a rule may name: staff roles and [`ASSIGNEE`].
pub fn recipient_roles() -> impl Iterator<Item = &'static str> {
    Role::STAFF.iter().map(|role| role.as_str()).chain([ASSIGNEE])
}

/// One configured notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRule {
    pub id: String,
    pub organization_id: String,
    pub kind: Kind,
    pub name: String,
    pub addresses: Vec<String>,
    /// Staff roles, plus [`ASSIGNEE`] for the appeal's current assignee.
    pub roles: Vec<String>,
    pub template: String,
    pub enabled: bool,
    pub description: String,
}

/// What a new organization starts with: one notification of each type.
pub fn defaults(organization_id: &str) -> Vec<NotificationRule> {
    Kind::ALL
        .iter()
        .map(|&kind| {
            let profile = kind.profile();
            let text = texts::Text::of(profile.default);
            NotificationRule {
                id: format!("default-{}", kind.as_str()),
                organization_id: organization_id.to_owned(),
                kind,
                name: text.subject.to_owned(),
                addresses: Vec::new(),
                roles: profile.default_roles.iter().map(|role| (*role).to_owned()).collect(),
                template: text.body.to_owned(),
                enabled: true,
                description: String::new(),
            }
        })
        .collect()
}

/// Quiet hours and the digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgSettings {
    pub organization_id: String,
    pub time_zone: Tz,
    pub quiet: Option<(NaiveTime, NaiveTime)>,
    pub digest_at: Option<NaiveTime>,
    pub last_digest_on: String,
}

impl OrgSettings {
    pub fn default_for(organization_id: &str) -> OrgSettings {
        OrgSettings {
            organization_id: organization_id.to_owned(),
            time_zone: Tz::Europe__Moscow,
            quiet: None,
            digest_at: None,
            last_digest_on: String::new(),
        }
    }

    /// When non-urgent mail queued at `now` may go: `now`, or the end of the quiet period
    /// `now` falls in, in the organization's local time.
    pub fn release_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let Some((from, until)) = self.quiet else { return now };
        let local = now.with_timezone(&self.time_zone);
        let time = local.time();
        let quiet = if from <= until { time >= from && time < until } else { time >= from || time < until };
        if !quiet {
            return now;
        }
        // The end is today when it is still ahead, else tomorrow (a period across midnight).
        let mut date = local.date_naive();
        if time >= until {
            date = date.succ_opt().unwrap_or(date);
        }
        let end = date.and_time(until);
        // A wall-clock time skipped by a DST change: take the earliest valid reading after it.
        self.time_zone
            .from_local_datetime(&end)
            .earliest()
            .or_else(|| self.time_zone.from_local_datetime(&(end + chrono::Duration::hours(1))).earliest())
            .map_or(now, |at| at.with_timezone(&Utc))
    }

    /// The local date if the digest is due at `now` and was not yet sent that day.
    pub fn digest_due(&self, now: DateTime<Utc>) -> Option<String> {
        let at = self.digest_at?;
        let local = now.with_timezone(&self.time_zone);
        let today = format!("{:04}-{:02}-{:02}", local.year(), local.month(), local.day());
        (local.time() >= at && self.last_digest_on != today).then_some(today)
    }
}

pub fn parse_hhmm(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M").ok()
}

pub fn hhmm(time: Option<NaiveTime>) -> String {
    time.map(|t| t.format("%H:%M").to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn kinds_keep_their_stored_and_wire_names() {
        let names: Vec<&str> = Kind::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(
            names,
            ["message_arrived", "deadline_warning", "overdue", "approval_requested", "returned_by_applicant"]
        );
        let wire: Vec<i32> = Kind::ALL.iter().map(|kind| kind.to_proto()).collect();
        assert_eq!(wire, [1, 2, 3, 4, 5]);
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(*kind));
            assert_eq!(Kind::from_proto(kind.to_proto()), Some(*kind));
        }
        assert_eq!((Kind::parse("MessageArrived"), Kind::from_proto(0), Kind::from_proto(6)), (None, None, None));
        assert_eq!(
            recipient_roles().collect::<Vec<_>>().join(", "),
            "coordinator, executor, head, curator, org_admin, approver, assignee"
        );
    }

    /// The defaults read as the seed's did.
    #[test]
    fn defaults_keep_their_words() {
        const FACTS: &str = "Номер сообщения: {number}\nКатегория сообщения: {category}\nНаименование текущего ЛКО: {organization}\n\
Дата создания сообщения: {created_at}\nПлановый срок рассмотрения сообщения: {deadline}\n\
Текущий статус сообщения: {status}\n";
        const EXECUTION: &str = "Срок исполнения: {execution_due}\n";
        let rule = |kind: Kind, name: &str, roles: &[&str], template: String| NotificationRule {
            id: format!("default-{}", kind.as_str()),
            organization_id: "o".into(),
            kind,
            name: name.into(),
            addresses: Vec::new(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            template,
            enabled: true,
            description: String::new(),
        };
        let expected = vec![
            rule(
                Kind::MessageArrived,
                "Поступление сообщений в ЛКО",
                &[],
                format!("В ЛКО поступило новое сообщение.\n\n{FACTS}"),
            ),
            rule(
                Kind::DeadlineWarning,
                "Приближается срок рассмотрения сообщения",
                &["assignee", "coordinator"],
                format!("Приближается срок рассмотрения сообщения.\n\n{FACTS}{EXECUTION}"),
            ),
            rule(
                Kind::Overdue,
                "Просрочено сообщение",
                &["head", "curator"],
                format!("Срок рассмотрения сообщения истёк.\n\n{FACTS}{EXECUTION}"),
            ),
            rule(
                Kind::ApprovalRequested,
                "Ответ ожидает согласования или утверждения",
                &["head", "approver"],
                format!("Подготовленный ответ ожидает согласования или утверждения.\n\n{FACTS}{EXECUTION}"),
            ),
            rule(
                Kind::ReturnedByApplicant,
                "Сообщение возвращено заявителем",
                &["coordinator", "curator"],
                format!(
                    "Заявитель отклонил ответ: сообщение возвращено на повторное рассмотрение.\n\n{FACTS}{EXECUTION}"
                ),
            ),
        ];
        assert_eq!(defaults("o"), expected);
        assert_eq!(Kind::ALL.iter().filter(|kind| kind.urgent()).collect::<Vec<_>>(), [&Kind::Overdue]);
        // They become the admin's own templates: the admin's grammar.
        for rule in defaults("o") {
            crate::template::validate(&rule.name).unwrap();
            crate::template::validate(&rule.template).unwrap();
        }
    }

    #[test]
    fn quiet_hours_hold_until_local_morning() {
        let settings = OrgSettings {
            time_zone: Tz::Asia__Kamchatka,
            quiet: Some((parse_hhmm("22:00").unwrap(), parse_hhmm("08:00").unwrap())),
            ..OrgSettings::default_for("o")
        };
        // 23:30 in Kamchatka (UTC+12) → 08:00 next local day = 20:00 UTC.
        assert_eq!(settings.release_at(at("2026-03-10T11:30:00Z")), at("2026-03-10T20:00:00Z"));
        // 03:00 local → 08:00 the same local day.
        assert_eq!(settings.release_at(at("2026-03-10T15:00:00Z")), at("2026-03-10T20:00:00Z"));
        // 12:00 local: not quiet.
        assert_eq!(settings.release_at(at("2026-03-10T00:00:00Z")), at("2026-03-10T00:00:00Z"));
    }

    #[test]
    fn digest_goes_once_a_local_day() {
        let mut settings = OrgSettings {
            time_zone: Tz::Asia__Kamchatka,
            digest_at: parse_hhmm("09:00"),
            ..OrgSettings::default_for("o")
        };
        assert_eq!(settings.digest_due(at("2026-03-10T20:00:00Z")), None); // 08:00 local
        assert_eq!(settings.digest_due(at("2026-03-10T21:30:00Z")).as_deref(), Some("2026-03-11"));
        settings.last_digest_on = "2026-03-11".into();
        assert_eq!(settings.digest_due(at("2026-03-10T22:00:00Z")), None);
    }
}
