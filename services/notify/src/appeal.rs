//! What notify knows of an appeal, gathered from its events, and the placeholder values that
//! knowledge gives its messages.

use chrono_tz::Tz;

use crate::template::Values;
use crate::texts;

#[derive(Clone, Debug, Default)]
pub struct Appeal {
    pub appeal_id: String,
    pub number: i64,
    pub applicant_name: String,
    pub applicant_email: String,
    pub category_id: String,
    pub organization_id: String,
    pub organization_name: String,
    pub time_zone: String,
    pub created_at: i64,
    pub deadline: Option<i64>,
    pub execution_due: Option<i64>,
    pub status: String,
    pub received: bool,
}

impl Appeal {
    fn tz(&self) -> Tz {
        self.time_zone.parse().unwrap_or(Tz::Europe__Moscow)
    }

    /// In the appeal's zone once routing named it; before that (the registration e-mail) in
    /// Moscow time, said so, as the platform's applicants are used to.
    pub fn local(&self, micros: Option<i64>) -> String {
        let suffix = if self.time_zone.is_empty() { texts::MOSCOW_TIME } else { "" };
        micros
            .filter(|m| *m > 0)
            .map(|m| {
                let local = pos_platform::db::from_micros(m).with_timezone(&self.tz());
                format!("{}{suffix}", local.format("%d.%m.%Y %H:%M"))
            })
            .unwrap_or_default()
    }

    /// Every placeholder's value; what is not known yet renders as "—".
    pub fn values(&self) -> Values {
        let mut values = Values::default();
        let number = if self.number > 0 { self.number.to_string() } else { String::new() };
        values.set("number", number.clone());
        values.set("registration_number", number);
        values.set("category", self.category_id.clone());
        values.set("organization", self.organization_name.clone());
        values.set("created_at", self.local(Some(self.created_at)));
        values.set("registration_date", self.local(Some(self.created_at)));
        values.set("deadline", self.local(self.deadline));
        values.set("execution_due", self.local(self.execution_due));
        values.set("status", self.status.clone());
        values.set("applicant_name", self.applicant_name.clone());
        values
    }
}
