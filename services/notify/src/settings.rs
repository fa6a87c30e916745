//! The organization admin's notification configuration: notifications by type with their
//! recipients and templates, quiet hours and the daily digest, in the organization's local time.

use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use pos_platform::db::{RowExt, Tx};
use sqlx::Row;

/// A notification's type, as the admin picks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    MessageArrived,
    DeadlineWarning,
    Overdue,
    ApprovalRequested,
    ReturnedByApplicant,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::MessageArrived,
        Kind::DeadlineWarning,
        Kind::Overdue,
        Kind::ApprovalRequested,
        Kind::ReturnedByApplicant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::MessageArrived => "message_arrived",
            Kind::DeadlineWarning => "deadline_warning",
            Kind::Overdue => "overdue",
            Kind::ApprovalRequested => "approval_requested",
            Kind::ReturnedByApplicant => "returned_by_applicant",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    pub fn from_proto(value: i32) -> Option<Kind> {
        use pos_proto::v1::NotificationType as T;
        match T::try_from(value).ok()? {
            T::Unspecified => None,
            T::MessageArrived => Some(Kind::MessageArrived),
            T::DeadlineWarning => Some(Kind::DeadlineWarning),
            T::Overdue => Some(Kind::Overdue),
            T::ApprovalRequested => Some(Kind::ApprovalRequested),
            T::ReturnedByApplicant => Some(Kind::ReturnedByApplicant),
        }
    }

    pub fn to_proto(self) -> i32 {
        use pos_proto::v1::NotificationType as T;
        (match self {
            Kind::MessageArrived => T::MessageArrived,
            Kind::DeadlineWarning => T::DeadlineWarning,
            Kind::Overdue => T::Overdue,
            Kind::ApprovalRequested => T::ApprovalRequested,
            Kind::ReturnedByApplicant => T::ReturnedByApplicant,
        }) as i32
    }

    /// Urgent mail ignores quiet hours and the digest: an overdue appeal cannot wait for morning.
    pub fn urgent(self) -> bool {
        match self {
            Kind::Overdue => true,
            Kind::MessageArrived | Kind::DeadlineWarning | Kind::ApprovalRequested | Kind::ReturnedByApplicant => false,
        }
    }
}

/// One configured notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRule {
    pub id: String,
    pub organization_id: String,
    pub kind: Kind,
    pub name: String,
    pub addresses: Vec<String>,
    /// Staff roles, plus `assignee` for the appeal's current assignee.
    pub roles: Vec<String>,
    pub template: String,
    pub enabled: bool,
    pub description: String,
}

/// The seed's template fields. A new message has no execution deadline yet, so "message
/// arrived" leaves that line out rather than show an empty value.
const FACTS: &str = "Номер сообщения: {number}\nКатегория сообщения: {category}\nНаименование текущего ЛКО: {organization}\n\
Дата создания сообщения: {created_at}\nПлановый срок рассмотрения сообщения: {deadline}\n\
Текущий статус сообщения: {status}\n";
const EXECUTION: &str = "Срок исполнения: {execution_due}\n";

/// What a new organization starts with: the seed's "message arrived" notification to the
/// organization's own address, and the staff alerts the workflow needs.
pub fn defaults(organization_id: &str) -> Vec<NotificationRule> {
    let rule = |kind: Kind, name: &str, roles: &[&str], intro: &str| NotificationRule {
        id: format!("default-{}", kind.as_str()),
        organization_id: organization_id.to_owned(),
        kind,
        name: name.to_owned(),
        addresses: Vec::new(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        template: if kind == Kind::MessageArrived {
            format!("{intro}\n\n{FACTS}")
        } else {
            format!("{intro}\n\n{FACTS}{EXECUTION}")
        },
        enabled: true,
        description: String::new(),
    };
    vec![
        rule(Kind::MessageArrived, "Поступление сообщений в ЛКО", &[], "В ЛКО поступило новое сообщение."),
        rule(
            Kind::DeadlineWarning,
            "Приближается срок рассмотрения сообщения",
            &["assignee", "coordinator"],
            "Приближается срок рассмотрения сообщения.",
        ),
        rule(Kind::Overdue, "Просрочено сообщение", &["head", "curator"], "Срок рассмотрения сообщения истёк."),
        rule(
            Kind::ApprovalRequested,
            "Ответ ожидает согласования или утверждения",
            &["head", "approver"],
            "Подготовленный ответ ожидает согласования или утверждения.",
        ),
        rule(
            Kind::ReturnedByApplicant,
            "Сообщение возвращено заявителем",
            &["coordinator", "curator"],
            "Заявитель отклонил ответ: сообщение возвращено на повторное рассмотрение.",
        ),
    ]
}

fn rule_from_row(row: &sqlx::any::AnyRow) -> Result<NotificationRule, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let list = |column: &str| -> Result<Vec<String>, sqlx::Error> {
        let text: String = row.try_get(column)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    Ok(NotificationRule {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        kind: Kind::parse(&kind).unwrap_or(Kind::MessageArrived),
        name: row.try_get("name")?,
        addresses: list("addresses")?,
        roles: list("roles")?,
        template: row.try_get("template")?,
        enabled: row.flag("enabled")?,
        description: row.try_get("description")?,
    })
}

/// The organization's notifications: its saved ones, or the defaults when it saved none.
pub async fn rules(
    connection: &mut sqlx::AnyConnection,
    organization_id: &str,
) -> Result<Vec<NotificationRule>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, organization_id, kind, name, addresses, roles, template, enabled, description \
         FROM org_notifications WHERE organization_id = $1 ORDER BY kind, id",
    )
    .bind(organization_id)
    .fetch_all(&mut *connection)
    .await?;
    if rows.is_empty() && !customized(connection, organization_id).await? {
        return Ok(defaults(organization_id));
    }
    rows.iter().map(rule_from_row).collect()
}

async fn customized(connection: &mut sqlx::AnyConnection, organization_id: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT customized FROM org_settings WHERE organization_id = $1")
        .bind(organization_id)
        .fetch_optional(&mut *connection)
        .await?;
    row.map_or(Ok(false), |row| row.flag("customized"))
}

/// Before the admin's first change, the defaults become the organization's own rows, so that
/// changing one keeps the others and deleting all leaves none.
pub async fn materialize(tx: &mut Tx, organization_id: &str, now: i64) -> Result<(), sqlx::Error> {
    let current = rules(tx, organization_id).await?;
    if customized(tx, organization_id).await? {
        return Ok(());
    }
    for rule in &current {
        save_rule(tx, rule, now).await?;
    }
    sqlx::query(
        "INSERT INTO org_settings (organization_id, time_zone, customized, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (organization_id) DO UPDATE SET customized = excluded.customized",
    )
    .bind(organization_id)
    .bind(Tz::Europe__Moscow.name())
    .bind(true)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn save_rule(tx: &mut Tx, rule: &NotificationRule, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO org_notifications (id, organization_id, kind, name, addresses, roles, template, enabled, description, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (organization_id, id) DO UPDATE SET kind = excluded.kind, name = excluded.name, addresses = excluded.addresses, \
         roles = excluded.roles, template = excluded.template, enabled = excluded.enabled, \
         description = excluded.description, updated_at = excluded.updated_at",
    )
    .bind(&rule.id)
    .bind(&rule.organization_id)
    .bind(rule.kind.as_str())
    .bind(&rule.name)
    .bind(serde_json::to_string(&rule.addresses).unwrap_or_default())
    .bind(serde_json::to_string(&rule.roles).unwrap_or_default())
    .bind(&rule.template)
    .bind(rule.enabled)
    .bind(&rule.description)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
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

pub async fn load_settings<'e, E>(executor: E, organization_id: &str) -> Result<OrgSettings, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT organization_id, time_zone, quiet_from, quiet_until, digest_enabled, digest_at, last_digest_on \
         FROM org_settings WHERE organization_id = $1",
    )
    .bind(organization_id)
    .fetch_optional(executor)
    .await?;
    let Some(row) = row else { return Ok(OrgSettings::default_for(organization_id)) };
    settings_from_row(&row)
}

pub fn settings_from_row(row: &sqlx::any::AnyRow) -> Result<OrgSettings, sqlx::Error> {
    let time_zone: String = row.try_get("time_zone")?;
    let quiet_from: String = row.try_get("quiet_from")?;
    let quiet_until: String = row.try_get("quiet_until")?;
    let digest_at: String = row.try_get("digest_at")?;
    Ok(OrgSettings {
        organization_id: row.try_get("organization_id")?,
        time_zone: time_zone.parse().unwrap_or(Tz::Europe__Moscow),
        quiet: parse_hhmm(&quiet_from).zip(parse_hhmm(&quiet_until)),
        digest_at: if row.flag("digest_enabled")? { parse_hhmm(&digest_at) } else { None },
        last_digest_on: row.try_get("last_digest_on")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
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
