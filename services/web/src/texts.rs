//! What people read, in Russian and in the domain's words: folders, statuses, history, answer
//! types, sources, roles, times and the two clocks.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use pos_platform::auth::Role;
use pos_proto::v1 as pb;
use pos_proto::v1::events::AnswerType;

/// The cabinet's folders in the order staff know them, with the slug the URL carries.
pub const FOLDERS: [(pb::Folder, &str, &str); 6] = [
    (pb::Folder::New, "new", "Новые"),
    (pb::Folder::InWork, "in-work", "В работе"),
    (pb::Folder::Returned, "returned", "Возвращены"),
    (pb::Folder::Processed, "processed", "Обработанные"),
    (pb::Folder::SentForApproval, "approval", "Направлены на согласование"),
    (pb::Folder::ReturnedToCoordination, "coordination", "Возвращены на координацию"),
];

pub fn folder_by_slug(slug: &str) -> Option<pb::Folder> {
    FOLDERS.iter().find(|(_, s, _)| *s == slug).map(|(f, _, _)| *f)
}

pub fn folder_slug(folder: pb::Folder) -> &'static str {
    FOLDERS.iter().find(|(f, _, _)| *f == folder).map_or("new", |(_, s, _)| s)
}

pub fn folder_name(folder: i32) -> &'static str {
    FOLDERS.iter().find(|(f, _, _)| *f as i32 == folder).map_or("—", |(_, _, name)| name)
}

/// The card's status line (the ticket's `status`, as ticketing names it).
pub fn status(code: &str) -> &str {
    match code {
        "new" => "Новое",
        "in work" => "В работе",
        "executor assigned" => "Назначен исполнитель",
        "answer prepared" => "Ответ подготовлен",
        "information requested" => "Запрошена информация у заявителя",
        "on agreement" => "На согласовании",
        "on approval" => "На утверждении",
        "answered" => "Ответ направлен заявителю",
        "returned for re-review" => "Повторное рассмотрение",
        "accepted by applicant" => "Ответ принят заявителем",
        "re-review stopped" => "Повторное рассмотрение остановлено",
        "rejected" => "Отклонено",
        "redirected" => "Перенаправлено",
        "returned to coordination" => "Возвращено на координацию",
        other => other,
    }
}

/// A history line's action (ход работ).
pub fn history_action(action: &str) -> &str {
    match action {
        "received" => "Поступило в кабинет",
        "taken in work" => "Взято в работу",
        "executor assigned" => "Назначен исполнитель",
        "handed over" => "Передано другому исполнителю",
        "returned to coordinator" => "Возвращено координатору",
        "answer prepared" => "Подготовлен ответ",
        "information requested" => "Запрошена информация у заявителя",
        "information received" => "Информация получена",
        "sent for agreement" => "Направлено на согласование",
        "agreed" => "Согласовано",
        "sent for approval" => "Направлено на утверждение",
        "returned for rework" => "Возвращено на доработку",
        "approved" => "Ответ утверждён и направлен заявителю",
        "edited and approved" => "Ответ отредактирован, утверждён и направлен заявителю",
        "redirected" => "Перенаправлено",
        "returned to coordination" => "Возвращено на координацию",
        "rejected" => "Отклонено",
        "accepted by applicant" => "Заявитель принял ответ",
        "rejected by applicant" => "Заявитель не согласился с ответом",
        "re-review stopped" => "Повторное рассмотрение остановлено",
        other => other,
    }
}

pub const ANSWER_TYPES: [(AnswerType, &str, &str); 4] = [
    (AnswerType::Resolved, "resolved", "Решено"),
    (AnswerType::NotResolved, "not-resolved", "Не решено"),
    (AnswerType::Postponed, "postponed", "Отложено"),
    (AnswerType::Rejected, "rejected", "Отклонено"),
];

pub fn answer_type(value: i32) -> &'static str {
    ANSWER_TYPES.iter().find(|(t, _, _)| *t as i32 == value).map_or("—", |(_, _, name)| name)
}

pub fn answer_type_by_slug(slug: &str) -> Option<AnswerType> {
    ANSWER_TYPES.iter().find(|(_, s, _)| *s == slug).map(|(t, _, _)| *t)
}

pub const SOURCES: [(pb::Source, &str, &str); 8] = [
    (pb::Source::Epgu, "epgu", "ЕПГУ"),
    (pb::Source::SiteWidget, "site", "Сайт"),
    (pb::Source::PortalWidget, "portal-widget", "Виджет портала"),
    (pb::Source::MobileApp, "app", "Мобильное приложение"),
    (pb::Source::SocialNetwork, "social", "Социальные сети"),
    (pb::Source::Email, "email", "Электронная почта"),
    (pb::Source::Phone, "phone", "Телефон (оператор)"),
    (pb::Source::ExternalSystem, "system", "Внешняя система"),
];

pub fn source(value: i32) -> &'static str {
    SOURCES.iter().find(|(s, _, _)| *s as i32 == value).map_or("—", |(_, _, name)| name)
}

pub fn source_by_slug(slug: &str) -> Option<pb::Source> {
    SOURCES.iter().find(|(_, s, _)| *s == slug).map(|(v, _, _)| *v)
}

pub fn role(role: Role) -> &'static str {
    match role {
        Role::Coordinator => "Координатор",
        Role::Executor => "Исполнитель",
        Role::Head => "Руководитель",
        Role::Curator => "Куратор",
        Role::OrgAdmin => "Администратор ЛКО",
        Role::Approver => "Согласующий",
        Role::Operator => "Оператор",
        Role::Applicant => "Заявитель",
        Role::System => "Система",
    }
}

/// `23:59 25.01.2025` in `zone`.
pub fn local_time(at: DateTime<Utc>, zone: Tz) -> String {
    zone.from_utc_datetime(&at.naive_utc()).format("%H:%M %d.%m.%Y").to_string()
}

/// `25.01.2025` in `zone`.
pub fn local_date(at: DateTime<Utc>, zone: Tz) -> String {
    zone.from_utc_datetime(&at.naive_utc()).format("%d.%m.%Y").to_string()
}

/// A span as the cabinet shows it: `9 дн. 14 ч 39 мин`; minutes are left out past a day.
pub fn span(seconds: i64) -> String {
    let minutes = seconds.max(0) / 60;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes} мин"),
        (0, _) => format!("{hours} ч {minutes} мин"),
        _ => format!("{days} дн. {hours} ч {minutes} мин"),
    }
}

/// How a clock looks: the words and the tone (a CSS class).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clock {
    pub text: String,
    pub tone: Tone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Normal,
    AtRisk,
    Overdue,
    Done,
}

impl Tone {
    pub fn class(self) -> &'static str {
        match self {
            Tone::Normal => "clock",
            Tone::AtRisk => "clock at-risk",
            Tone::Overdue => "clock overdue",
            Tone::Done => "clock done",
        }
    }
}

/// A deadline as SLA reports it, shown at `now` in `zone`: "9 дн. 14 ч 39 мин / до 23:59 25.01.2025".
pub fn clock(deadline: &pb::Deadline, now: DateTime<Utc>, zone: Tz) -> Option<Clock> {
    let due = deadline.due.as_ref()?.utc.as_ref().and_then(pos_proto::time::from_proto)?;
    let until = local_time(due, zone);
    let left = (due - now).num_seconds();
    Some(if deadline.met {
        Clock { text: format!("выполнено в срок (до {until})"), tone: Tone::Done }
    } else if deadline.stopped {
        Clock { text: format!("остановлен (срок был до {until})"), tone: Tone::Done }
    } else if deadline.overdue || left < 0 {
        Clock {
            text: format!("просрочено на {} / срок был до {until}", span(-left)), tone: Tone::Overdue
        }
    } else if deadline.paused {
        Clock { text: format!("приостановлен / до {until}"), tone: Tone::Normal }
    } else {
        let tone = if deadline.at_risk { Tone::AtRisk } else { Tone::Normal };
        Clock { text: format!("{} / до {until}", span(left)), tone }
    })
}

/// The answer deadline of a list row, from the ticket alone.
pub fn row_clock(ticket: &pb::Ticket, now: DateTime<Utc>, zone: Tz) -> Option<Clock> {
    let due = ticket.answer_due.as_ref().and_then(pos_proto::time::from_proto)?;
    let until = local_time(due, zone);
    let left = (due - now).num_seconds();
    Some(if ticket.overdue || left < 0 {
        Clock { text: format!("просрочено, срок был до {until}"), tone: Tone::Overdue }
    } else {
        Clock { text: format!("{} / до {until}", span(left)), tone: Tone::Normal }
    })
}

/// The placeholders an answer template may use (ticketing checks and fills them), with what each
/// stands for, for the template editor's hint.
pub const ANSWER_PLACEHOLDERS: [(&str, &str); 8] = [
    ("applicant_name", "ФИО заявителя"),
    ("user_name", "ФИО сотрудника, готовящего ответ"),
    ("message_number", "номер сообщения"),
    ("organization_name", "название организации"),
    ("category", "категория сообщения"),
    ("created_date", "дата поступления сообщения"),
    ("registration_number", "регистрационный номер"),
    ("registration_date", "дата регистрации"),
];

/// The kinds of notification e-mails to the organization (notify's `NotificationType`).
pub const NOTIFICATION_TYPES: [(pb::NotificationType, &str); 5] = [
    (pb::NotificationType::MessageArrived, "Поступление сообщения в ЛКО"),
    (pb::NotificationType::DeadlineWarning, "Предупреждение о сроке"),
    (pb::NotificationType::Overdue, "Просрочка"),
    (pb::NotificationType::ApprovalRequested, "Запрос на согласование или утверждение"),
    (pb::NotificationType::ReturnedByApplicant, "Возвращено заявителем"),
];

pub fn notification_type(value: i32) -> &'static str {
    NOTIFICATION_TYPES.iter().find(|(t, _)| *t as i32 == value).map_or("—", |(_, name)| name)
}

/// Who an incident is addressed to.
pub fn incident_kind(kind: i32) -> &'static str {
    match pb::IncidentKind::try_from(kind) {
        Ok(pb::IncidentKind::SituationCenter) => "Ситуационный центр",
        Ok(pb::IncidentKind::FederalSupervisor) => "Федеральный надзорный орган",
        _ => "Инцидент",
    }
}

/// An incident's state (`Incident.state`, as ticketing names it); a federal supervisor has one
/// line, so its states name none.
pub fn incident_state(kind: i32, state: &str) -> String {
    let federal = kind == pb::IncidentKind::FederalSupervisor as i32;
    let (what, line) = state.split_once(", ").unwrap_or((state, ""));
    let what = match what {
        "open" if federal => "На проверке",
        "open" => "В работе",
        "information requested" => "Запрошена информация",
        "resolved" => "Решён, ждёт подтверждения заявителя",
        "confirmed" => "Закрыт: заявитель подтвердил результат",
        other => other,
    };
    match line {
        _ if federal => what.to_owned(),
        "first line" => format!("{what} (первая линия)"),
        "second line" => format!("{what} (вторая линия)"),
        _ => what.to_owned(),
    }
}

/// A history line of an incident's step, None for the ticket's own actions.
pub fn incident_history_action(action: &str) -> Option<&'static str> {
    Some(match action {
        "escalated" => "Открыт инцидент",
        "incident escalated to the second line" => "Инцидент передан на вторую линию",
        "incident information requested" => "По инциденту запрошена информация",
        "incident information received" => "По инциденту получена информация",
        "incident resolved" => "Инцидент решён",
        "incident result confirmed" => "Заявитель подтвердил результат инцидента",
        "incident result rejected" => "Заявитель не согласился с результатом инцидента",
        _ => return None,
    })
}

/// The onboarding confirmation's two steps (seed 004, «Требуется подтверждение»), with the slug
/// the form's URL carries.
pub const ONBOARDING_STEPS: [(pb::OnboardingStep, &str, &str); 2] = [
    (pb::OnboardingStep::TrainingDone, "training-done", "Мною пройдено обучение"),
    (pb::OnboardingStep::CabinetReady, "cabinet-ready", "ЛКО готов к работе"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn deadline(due: &str) -> pb::Deadline {
        pb::Deadline {
            due: Some(pb::LocalTime {
                utc: Some(pos_proto::time::to_proto(at(due))),
                time_zone: "Asia/Kamchatka".into(),
                local: String::new(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_seed_example_reads_as_staff_know_it() {
        // Received 23:18 15.01.2025 Kamchatka time, fast-track: due 23:59 25.01.2025 there.
        let kamchatka = chrono_tz::Asia::Kamchatka;
        let due = deadline("2025-01-25T23:59:59+12:00");
        let now = at("2025-01-16T09:20:00+12:00");
        let clock = clock(&due, now, kamchatka).unwrap();
        assert_eq!(clock.text, "9 дн. 14 ч 39 мин / до 23:59 25.01.2025");
        assert_eq!(clock.tone, Tone::Normal);
    }

    #[test]
    fn overdue_and_at_risk_clocks_say_so() {
        let zone = chrono_tz::Asia::Kamchatka;
        let mut due = deadline("2025-01-25T23:59:59+12:00");
        due.overdue = true;
        let late = clock(&due, at("2025-01-26T02:00:00+12:00"), zone).unwrap();
        assert_eq!(late.tone, Tone::Overdue);
        assert_eq!(late.text, "просрочено на 2 ч 0 мин / срок был до 23:59 25.01.2025");
        let mut due = deadline("2025-01-25T23:59:59+12:00");
        due.at_risk = true;
        assert_eq!(clock(&due, at("2025-01-25T20:00:00+12:00"), zone).unwrap().tone, Tone::AtRisk);
    }

    #[test]
    fn every_folder_has_a_slug_and_a_name() {
        for (folder, slug, name) in FOLDERS {
            assert_eq!(folder_by_slug(slug), Some(folder));
            assert_eq!(folder_name(folder as i32), name);
        }
    }
}
