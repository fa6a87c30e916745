//! The words notify writes to people, as templates under `templates/` filled by
//! [`crate::template`], and the labels it puts in them.
//!
//! - `templates/applicant/`: one letter per [`Notice`], each set in `letter.txt` (greeting and
//!   signature);
//! - `templates/organization/`: the notification of each type a new organization starts with
//!   (its admin edits them from then on; see [`crate::settings::Kind`]), and the daily digest's
//!   subject.
//!
//! A template file holds the subject on its first line, a blank line, then the body, verbatim.
//! The organizations' templates become their admins' own, so they use the appeal's
//! [`PLACEHOLDERS`](crate::template::PLACEHOLDERS) only; the letters and the digest may also use
//! the event's words ([`WORDS`]) and optional parts, `{if comment}…{end}`.

use crate::template::{Grammar, Values, render_with};

/// Placeholders only notify's own texts use, what the event itself says: `comment` (what the
/// organization asks the applicant to clarify), `result` and `answer` (the answer's result and
/// text), `notice` (a letter's content, inside `letter.txt`), `date` and `count` (the digest's
/// local date and size), `appeal_link` (the applicant's link to the appeal's page), `handler`
/// (who handles an escalation: the situation center, a federal body).
pub const WORDS: &[&str] = &["comment", "result", "answer", "notice", "date", "count", "appeal_link", "handler"];

const GRAMMAR: Grammar<'static> = Grammar { words: WORDS, optional_parts: true };

const LETTER: &str = include_str!("../templates/applicant/letter.txt");
const DIGEST: &str = include_str!("../templates/organization/digest.txt");

/// A template's subject and body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Text {
    pub subject: &'static str,
    pub body: &'static str,
}

impl Text {
    /// A template file's subject and body.
    pub(crate) fn of(file: &'static str) -> Text {
        let (subject, rest) = file.split_once('\n').unwrap_or((file, ""));
        Text { subject, body: rest.strip_prefix('\n').unwrap_or(rest) }
    }
}

/// Defines [`Notice`] with the template of each variant, so that a letter's kind and its
/// words are declared together.
macro_rules! notices {
    ($($(#[$doc:meta])* $variant:ident => $file:literal,)+) => {
        /// A letter to the applicant.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, strum::VariantArray)]
        pub enum Notice {
            $($(#[$doc])* $variant,)+
        }

        impl Notice {
            pub fn text(self) -> Text {
                match self {
                    $(Notice::$variant => Text::of(include_str!(concat!("../templates/applicant/", $file))),)+
                }
            }
        }
    };
}

notices! {
    /// The appeal is registered: its number, date and category.
    Registered => "registered.txt",
    /// The appeal moved to another folder.
    StatusChanged => "status_changed.txt",
    /// The organization needs more from the applicant (`comment`: what).
    InformationRequested => "information_requested.txt",
    /// The approved answer (`result`, `answer`).
    AnswerReady => "answer_ready.txt",
    /// The applicant rejected the answer: the appeal is reviewed again.
    Reopened => "reopened.txt",
    /// The organization escalated (`handler`: to whom; `comment`: the subject).
    IncidentOpened => "incident_opened.txt",
    /// An escalation's handling line needs more from the applicant (`comment`: what).
    IncidentInformationRequested => "incident_information_requested.txt",
    /// An escalation's result (`answer`), to confirm or reject.
    IncidentResolved => "incident_resolved.txt",
}

/// The subject and body of `notice` to the applicant, filled with `values`.
pub fn letter(notice: Notice, values: &Values) -> (String, String) {
    let text = notice.text();
    // A notice is the letter's middle paragraph: its final line breaks (the file's, or those
    // before a last line left out for want of a value) are not part of it.
    let words = render_with(text.body, values, GRAMMAR);
    let mut values = values.clone();
    values.set("notice", words.trim_end_matches('\n').to_owned());
    (render_with(text.subject, &values, GRAMMAR), render_with(LETTER, &values, GRAMMAR))
}

/// The subject of an organization's digest of `count` notifications on local `date`.
pub fn digest_subject(date: &str, count: usize) -> String {
    let mut values = Values::default();
    values.set("date", date);
    values.set("count", count.to_string());
    render_with(Text::of(DIGEST).subject, &values, GRAMMAR)
}

/// The status an appeal has once registered.
pub const REGISTERED: &str = "Зарегистрировано";

/// A folder as the applicant reads it; empty when it has no name.
pub fn folder_label(folder: pos_proto::v1::Folder) -> &'static str {
    use pos_proto::v1::Folder;
    match folder {
        Folder::Unspecified => "",
        Folder::New => "Новое",
        Folder::InWork => "В работе",
        Folder::Returned => "На повторном рассмотрении",
        Folder::Processed => "Обработано",
        Folder::SentForApproval => "Ответ на утверждении",
        Folder::ReturnedToCoordination => "Возвращено на координацию",
    }
}

/// An answer's result as the applicant reads it; empty when unspecified.
pub fn answer_label(answer: pos_proto::v1::events::AnswerType) -> &'static str {
    use pos_proto::v1::events::AnswerType;
    match answer {
        AnswerType::Unspecified => "",
        AnswerType::Resolved => "Решено",
        AnswerType::NotResolved => "Не решено",
        AnswerType::Postponed => "Отложено",
        AnswerType::Rejected => "Отклонено",
    }
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::*;
    use crate::template::validate_with;

    #[test]
    fn every_template_is_valid() {
        for notice in Notice::VARIANTS {
            let text = notice.text();
            assert!(!text.subject.is_empty() && !text.body.is_empty(), "{notice:?}");
            validate_with(text.subject, GRAMMAR).unwrap();
            validate_with(text.body, GRAMMAR).unwrap();
        }
        validate_with(LETTER, GRAMMAR).unwrap();
        validate_with(DIGEST, GRAMMAR).unwrap();
    }

    fn appeal_values(applicant_name: &str) -> Values {
        let mut values = Values::default();
        values.set("number", "1001");
        values.set("registration_number", "1001");
        values.set("registration_date", "01.03.2026 10:00 по местному времени (UTC+12)");
        values.set("category", "Питание в школе");
        values.set("subcategory", "Качество питания в школьной столовой");
        values.set("organization", "МБОУ СОШ №1");
        values.set("status", "В работе");
        values.set("applicant_name", applicant_name);
        values
    }

    /// The letters read word for word: names, the local time with its zone, no line of "—".
    #[test]
    fn letters_keep_their_words() {
        let named = appeal_values("Иван Петров");
        let frame =
            |greeting: &str, text: &str| format!("{greeting}\n\n{text}\n\nС уважением, Платформа обратной связи\n");
        assert_eq!(
            letter(Notice::Registered, &named),
            (
                "Сообщение №1001 зарегистрировано".to_owned(),
                frame(
                    "Здравствуйте, Иван Петров!",
                    "Ваше сообщение зарегистрировано 01.03.2026 10:00 по местному времени (UTC+12) под номером \
                     1001.\nКатегория: Питание в школе.\nПодкатегория: Качество питания в школьной столовой.\n\
                     О ходе его рассмотрения мы сообщим по электронной почте."
                )
            )
        );
        let anonymous = appeal_values("");
        assert_eq!(
            letter(Notice::StatusChanged, &anonymous),
            (
                "Статус сообщения №1001: В работе".to_owned(),
                frame(
                    "Здравствуйте!",
                    "Статус вашего сообщения №1001 изменён: В работе.\nКатегория: Питание в школе.\n\
                     Организация: МБОУ СОШ №1."
                )
            )
        );
        let mut dated = anonymous.clone();
        dated.set("deadline", "11.03.2026 23:59 по местному времени (UTC+12)");
        dated.set("comment", "Назначен исполнитель");
        assert_eq!(
            letter(Notice::StatusChanged, &dated).1,
            frame(
                "Здравствуйте!",
                "Статус вашего сообщения №1001 изменён: В работе.\nКатегория: Питание в школе.\n\
                 Организация: МБОУ СОШ №1.\nПлановый срок рассмотрения: 11.03.2026 23:59 по местному времени \
                 (UTC+12).\n\nКомментарий организации: Назначен исполнитель"
            )
        );
        let mut asked = named.clone();
        assert_eq!(
            letter(Notice::InformationRequested, &asked).1,
            frame(
                "Здравствуйте, Иван Петров!",
                "Для рассмотрения вашего сообщения №1001 организации «МБОУ СОШ №1» нужна \
                 дополнительная информация. Срок рассмотрения приостановлен до её получения."
            )
        );
        asked.set("comment", "Уточните номер класса");
        assert_eq!(
            letter(Notice::InformationRequested, &asked).0,
            "По сообщению №1001 нужна дополнительная информация"
        );
        assert_eq!(
            letter(Notice::InformationRequested, &asked).1,
            frame(
                "Здравствуйте, Иван Петров!",
                "Для рассмотрения вашего сообщения №1001 организации «МБОУ СОШ №1» нужна \
                 дополнительная информация. Срок рассмотрения приостановлен до её получения.\n\n\
                 Что нужно уточнить: Уточните номер класса"
            )
        );
        let mut answered = named.clone();
        answered.set("answer", "Меню исправлено.");
        let closing = "Вы можете принять ответ и оценить его или отклонить с комментарием — тогда сообщение \
                       будет рассмотрено повторно.";
        let opening = "Организация «МБОУ СОШ №1» подготовила ответ на ваше сообщение №1001.";
        assert_eq!(
            letter(Notice::AnswerReady, &answered),
            (
                "Ответ на сообщение №1001 готов".to_owned(),
                frame("Здравствуйте, Иван Петров!", &format!("{opening}\n\nМеню исправлено.\n\n{closing}"))
            )
        );
        answered.set("result", "Решено");
        answered.set("answer", "");
        assert_eq!(
            letter(Notice::AnswerReady, &answered).1,
            frame("Здравствуйте, Иван Петров!", &format!("{opening}\n\nРезультат: Решено.\n\n\n\n{closing}"))
        );
        assert_eq!(
            letter(Notice::Reopened, &named),
            (
                "Сообщение №1001 направлено на повторное рассмотрение".to_owned(),
                frame(
                    "Здравствуйте, Иван Петров!",
                    "Ваше сообщение №1001 направлено на повторное рассмотрение в организацию «МБОУ СОШ №1». \
                     Мы сообщим, когда будет готов новый ответ."
                )
            )
        );
    }

    /// The applicant is told of an escalation, asked for information, and shown its result with
    /// how to confirm or reject it.
    #[test]
    fn incident_letters_keep_their_words() {
        let frame =
            |greeting: &str, text: &str| format!("{greeting}\n\n{text}\n\nС уважением, Платформа обратной связи\n");
        let mut values = appeal_values("Иван Петров");
        values.set("handler", "Рособрнадзор");
        values.set("comment", "Проверка данных в ФИС ФРДО");
        assert_eq!(
            letter(Notice::IncidentOpened, &values),
            (
                "По сообщению №1001 направлен запрос: Рособрнадзор".to_owned(),
                frame(
                    "Здравствуйте, Иван Петров!",
                    "Чтобы решить вопрос по вашему сообщению №1001, организация «МБОУ СОШ №1» направила запрос: \
                     Рособрнадзор. Срок рассмотрения сообщения продолжает идти. Мы сообщим, когда будет получен \
                     результат.\n\nТема запроса: Проверка данных в ФИС ФРДО"
                )
            )
        );
        values.set("comment", "Пришлите скриншот профиля");
        let (subject, body) = letter(Notice::IncidentInformationRequested, &values);
        assert_eq!(subject, "По сообщению №1001 нужна информация от вас");
        assert!(body.contains("Что нужно уточнить: Пришлите скриншот профиля\n\nОтветьте в личном кабинете"), "{body}");
        values.set("answer", "Данные диплома исправлены.");
        let (subject, body) = letter(Notice::IncidentResolved, &values);
        assert_eq!(subject, "По сообщению №1001 получен результат: Рособрнадзор");
        assert_eq!(
            body,
            frame(
                "Здравствуйте, Иван Петров!",
                "По запросу, направленному для решения вопроса по вашему сообщению №1001, получен результат \
                 (Рособрнадзор):\n\nДанные диплома исправлены.\n\nЕсли проблема решена, подтвердите результат в \
                 личном кабинете, в карточке сообщения №1001. Если нет — отклоните его и укажите причину: работа \
                 по запросу продолжится."
            )
        );
    }

    #[test]
    fn the_digest_keeps_its_subject() {
        assert_eq!(digest_subject("2026-03-11", 2), "Сводка уведомлений за 2026-03-11: 2");
    }
}
