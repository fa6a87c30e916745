//! Deadline policies as data: which period an appeal gets, when warnings go out, what a
//! redirect or a re-review does. Pure: the store loads them, [`Policy::resolve`] decides.

use serde::{Deserialize, Serialize};

/// The built-in policies, from `deploy/seed/sla/policies.toml`.
pub const POLICIES_TOML: &str = include_str!("../../../deploy/seed/sla/policies.toml");

/// The region code of the default policy.
pub const DEFAULT_REGION: &str = "*";

/// A period: so many calendar days, or working days of the region's production calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub days: u32,
    #[serde(default)]
    pub working_days: bool,
}

impl Period {
    pub const fn calendar(days: u32) -> Period {
        Period { days, working_days: false }
    }

    pub const fn working(days: u32) -> Period {
        Period { days, working_days: true }
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = if self.working_days { "working" } else { "calendar" };
        write!(f, "{} {unit} days", self.days)
    }
}

/// A fact's own period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactPeriod {
    pub fact_id: String,
    pub period: Period,
    /// Overrides the policy's flag for this fact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_to_next_working_day: Option<bool>,
}

/// A point before a deadline when a warning is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, untagged)]
pub enum WarningPoint {
    /// At 09:00 local time, so many working days before the last day.
    WorkingDaysBefore { working_days_before: u32 },
    /// When this share of the period has run.
    PercentOfPeriod { percent_of_period: u32 },
}

impl WarningPoint {
    /// A stable name, part of timer ids and of `sla.warning`'s `point`.
    pub fn name(&self) -> String {
        match self {
            WarningPoint::WorkingDaysBefore { working_days_before } => format!("{working_days_before}wd-before"),
            WarningPoint::PercentOfPeriod { percent_of_period } => format!("{percent_of_period}pct"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub region: String,
    pub standard: Period,
    pub fast_track: Period,
    /// The region's fast-track facts; `None`: the classifier's flag on `appeal.routed` stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_track_facts: Option<Vec<String>>,
    #[serde(default)]
    pub facts: Vec<FactPeriod>,
    #[serde(default)]
    pub move_to_next_working_day: bool,
    /// `None`: a re-review gets the appeal's first period again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rereview: Option<Period>,
    pub execution_share_percent: u32,
    #[serde(default)]
    pub warnings: Vec<WarningPoint>,
    #[serde(default = "yes")]
    pub redirect_keeps_deadline: bool,
}

fn yes() -> bool {
    true
}

/// What the policy decided for one appeal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub period: Period,
    pub fast_track: bool,
    pub move_to_next_working_day: bool,
    /// Why, for the SLA log: "fact edu-records.documents.other: 2 calendar days".
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoliciesFile {
    policies: Vec<Policy>,
}

/// Parses and checks policies from TOML.
pub fn parse(toml_text: &str) -> Result<Vec<Policy>, String> {
    let file: PoliciesFile = toml::from_str(toml_text).map_err(|e| format!("policies are not valid TOML: {e}"))?;
    for policy in &file.policies {
        let problems = policy.problems();
        if !problems.is_empty() {
            return Err(format!(
                "policy {}: {}",
                policy.region,
                problems.iter().map(|(f, p)| format!("{f}: {p}")).collect::<Vec<_>>().join("; ")
            ));
        }
    }
    Ok(file.policies)
}

/// The built-in policies.
pub fn embedded() -> Vec<Policy> {
    parse(POLICIES_TOML).expect("the built-in policies are valid (checked by a unit test)")
}

impl Policy {
    /// Field violations, as `(field, problem)`; empty when the policy is usable.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.region != DEFAULT_REGION && !(self.region.len() == 2 && self.region.chars().all(|c| c.is_ascii_digit()))
        {
            problems.push(("region".into(), "must be \"*\" or a two-digit region code".into()));
        }
        let mut period = |field: &str, period: &Period| {
            if !(1..=365).contains(&period.days) {
                problems.push((format!("{field}.days"), "must be between 1 and 365".into()));
            }
        };
        period("standard", &self.standard);
        period("fast_track", &self.fast_track);
        if let Some(rereview) = &self.rereview {
            period("rereview", rereview);
        }
        for (i, fact) in self.facts.iter().enumerate() {
            period(&format!("facts[{i}].period"), &fact.period);
        }
        for (i, fact) in self.facts.iter().enumerate() {
            if fact.fact_id.trim().is_empty() {
                problems.push((format!("facts[{i}].fact_id"), "must name a fact".into()));
            }
        }
        if !(1..=100).contains(&self.execution_share_percent) {
            problems.push(("execution_share_percent".into(), "must be between 1 and 100".into()));
        }
        for (i, warning) in self.warnings.iter().enumerate() {
            match warning {
                WarningPoint::WorkingDaysBefore { working_days_before } if !(1..=30).contains(working_days_before) => {
                    problems.push((format!("warnings[{i}]"), "working_days_before must be between 1 and 30".into()))
                }
                WarningPoint::PercentOfPeriod { percent_of_period } if !(1..=99).contains(percent_of_period) => {
                    problems.push((format!("warnings[{i}]"), "percent_of_period must be between 1 and 99".into()))
                }
                WarningPoint::WorkingDaysBefore { .. } | WarningPoint::PercentOfPeriod { .. } => {}
            }
        }
        problems
    }

    /// The period of an appeal of `fact_id`. The fact's own period wins; then fast-track (the
    /// region's list when it has one, else the classifier's flag); then the standard period.
    pub fn resolve(&self, fact_id: &str, classifier_fast_track: bool) -> Decision {
        let fast_track = match &self.fast_track_facts {
            Some(facts) => facts.iter().any(|f| f == fact_id),
            None => classifier_fast_track,
        };
        if let Some(fact) = self.facts.iter().find(|f| f.fact_id == fact_id) {
            return Decision {
                period: fact.period,
                fast_track,
                move_to_next_working_day: fact.move_to_next_working_day.unwrap_or(self.move_to_next_working_day),
                reason: format!("fact {fact_id}: {}", fact.period),
            };
        }
        let (period, what) = if fast_track { (self.fast_track, "fast-track") } else { (self.standard, "standard") };
        Decision {
            period,
            fast_track,
            move_to_next_working_day: self.move_to_next_working_day,
            reason: format!("{what} period of region {}: {period}", self.region),
        }
    }

    /// The period of re-review round 2 and later.
    pub fn rereview_period(&self, first: Period) -> Period {
        self.rereview.unwrap_or(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_policy() -> Policy {
        embedded().into_iter().find(|p| p.region == DEFAULT_REGION).unwrap()
    }

    #[test]
    fn the_built_in_default_is_30_and_10_calendar_days() {
        let policy = default_policy();
        assert_eq!(policy.standard, Period::calendar(30));
        assert_eq!(policy.fast_track, Period::calendar(10));
        assert_eq!(policy.warnings.len(), 2);
        assert!(policy.redirect_keeps_deadline);
    }

    #[test]
    fn a_fact_period_wins_then_fast_track_then_standard() {
        let policy = default_policy();
        let d = policy.resolve("edu-records.documents.other", false);
        assert_eq!((d.period, d.fast_track), (Period::calendar(2), false));
        let d = policy.resolve("education.e-diary.access", true);
        assert_eq!((d.period, d.fast_track), (Period::calendar(10), true));
        let d = policy.resolve("education.meals.quality", false);
        assert_eq!((d.period, d.fast_track), (Period::calendar(30), false));
    }

    #[test]
    fn a_region_can_decide_its_own_fast_track_facts() {
        let policy = Policy {
            region: "16".into(),
            fast_track_facts: Some(vec!["education.meals.quality".into()]),
            ..default_policy()
        };
        assert!(policy.resolve("education.meals.quality", false).fast_track);
        assert!(!policy.resolve("education.e-diary.access", true).fast_track);
    }

    #[test]
    fn bad_policies_name_their_fields() {
        let policy = Policy {
            standard: Period::calendar(0),
            execution_share_percent: 0,
            warnings: vec![WarningPoint::PercentOfPeriod { percent_of_period: 100 }],
            ..default_policy()
        };
        let fields: Vec<String> = policy.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["standard.days", "execution_share_percent", "warnings[0]"]);
    }
}
