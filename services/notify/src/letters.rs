//! Which letters an applicant receives: a deployment's setting (`[notify] applicant_letters`,
//! `POS_NOTIFY__APPLICANT_LETTERS=registered,taken_in_work,…`).
//!
//! A citizen wants to hear what concerns them (registered, taken in work, more information
//! needed, the answer, a re-review, a rejection), not every internal step of the organization
//! (an executor assigned, the answer sent for approval or returned for rework). Each name is
//! a letter of its own (`registered`, `answer_ready`, `reopened`) or a step of the ticket's
//! workflow, named as [`TicketAction`] names it (`taken_in_work`, `information_requested`, …):
//! a step the applicant hears of as a status change, when it moves the appeal to another folder.
//! Whatever step brings the appeal from New or Returned into In work (taking it in work, or
//! assigning an executor) is `taken_in_work` to the applicant.

use std::collections::BTreeSet;

use pos_proto::v1::events::TicketAction;
use serde::{Deserialize, Serialize};

/// The registration letter: number, time and the classifier's names.
pub const REGISTERED: &str = "registered";
/// The approved answer (`ticket.answer_approved`).
pub const ANSWER_READY: &str = "answer_ready";
/// The applicant rejected the answer: a re-review (`ticket.reopened`).
pub const REOPENED: &str = "reopened";
/// The organization escalated the appeal (`ticket.incident_changed`, opened).
pub const INCIDENT_OPENED: &str = "incident_opened";
/// An escalation's handling line needs more from the applicant.
pub const INCIDENT_INFORMATION_REQUESTED: &str = "incident_information_requested";
/// An escalation's result, which the applicant confirms or rejects.
pub const INCIDENT_RESOLVED: &str = "incident_resolved";

/// What an applicant hears of unless the deployment says otherwise. A coordinator's rejection is
/// the answer the applicant gets then: no `ticket.answer_approved` follows it. Of an escalation,
/// what the applicant acts on (information asked of them, a result to confirm or reject) and
/// its opening, which tells why the answer takes longer.
pub const DEFAULT: &[&str] = &[
    REGISTERED,
    "taken_in_work",
    "information_requested",
    ANSWER_READY,
    REOPENED,
    "rejected",
    INCIDENT_OPENED,
    INCIDENT_INFORMATION_REQUESTED,
    INCIDENT_RESOLVED,
];

/// Workflow steps that never make a status letter: they have letters of their own.
const OWN_LETTER: [TicketAction; 3] =
    [TicketAction::Unspecified, TicketAction::Approved, TicketAction::RejectedByApplicant];

/// A workflow step's name in the setting: `TICKET_ACTION_TAKEN_IN_WORK` → `taken_in_work`.
pub fn step_name(action: TicketAction) -> String {
    action.as_str_name().trim_start_matches("TICKET_ACTION_").to_ascii_lowercase()
}

/// Every name the setting may hold.
pub fn known() -> Vec<String> {
    let steps = (0..)
        .map_while(|value| TicketAction::try_from(value).ok())
        .filter(|action| !OWN_LETTER.contains(action))
        .map(step_name);
    [REGISTERED, ANSWER_READY, REOPENED, INCIDENT_OPENED, INCIDENT_INFORMATION_REQUESTED, INCIDENT_RESOLVED]
        .into_iter()
        .map(str::to_owned)
        .chain(steps)
        .collect()
}

/// The chosen letters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Names", into = "Vec<String>")]
pub struct Letters(BTreeSet<String>);

impl Default for Letters {
    fn default() -> Letters {
        Letters(DEFAULT.iter().map(|name| (*name).to_owned()).collect())
    }
}

impl Letters {
    /// The letters named, each checked against [`known`].
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<Letters, String> {
        let known = known();
        let mut chosen = BTreeSet::new();
        for name in names {
            let name = name.as_ref().trim();
            if name.is_empty() {
                continue;
            }
            if !known.iter().any(|k| k == name) {
                return Err(format!("unknown applicant letter {name:?}; known: {}", known.join(", ")));
            }
            chosen.insert(name.to_owned());
        }
        Ok(Letters(chosen))
    }

    /// Whether the applicant hears of `name` (a letter's or a step's name).
    pub fn allows(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    /// Whether the applicant hears of the workflow step `action`.
    pub fn allows_step(&self, action: TicketAction) -> bool {
        self.allows(&step_name(action))
    }
}

/// A list, or one comma-separated string as an environment variable gives it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Names {
    List(Vec<String>),
    One(String),
}

impl TryFrom<Names> for Letters {
    type Error = String;

    fn try_from(names: Names) -> Result<Letters, String> {
        match names {
            Names::List(list) => Letters::new(&list),
            Names::One(text) => Letters::new(&text.split(',').collect::<Vec<_>>()),
        }
    }
}

impl From<Letters> for Vec<String> {
    fn from(letters: Letters) -> Vec<String> {
        letters.0.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_what_concerns_the_applicant() {
        let letters = Letters::default();
        for step in [TicketAction::TakenInWork, TicketAction::InformationRequested, TicketAction::Rejected] {
            assert!(letters.allows_step(step), "{step:?}");
        }
        for step in [
            TicketAction::Created,
            TicketAction::ExecutorAssigned,
            TicketAction::SentForApproval,
            TicketAction::SentForAgreement,
            TicketAction::ReturnedForRework,
            TicketAction::AnswerPrepared,
        ] {
            assert!(!letters.allows_step(step), "{step:?}");
        }
        assert!(letters.allows(REGISTERED) && letters.allows(ANSWER_READY) && letters.allows(REOPENED));
        for incident in [INCIDENT_OPENED, INCIDENT_INFORMATION_REQUESTED, INCIDENT_RESOLVED] {
            assert!(letters.allows(incident) && known().contains(&incident.to_owned()), "{incident}");
        }
    }

    #[test]
    fn the_setting_reads_a_list_or_a_comma_separated_string_and_rejects_unknown_names() {
        assert_eq!(step_name(TicketAction::TakenInWork), "taken_in_work");
        assert!(known().contains(&"sent_for_approval".to_owned()));
        assert!(!known().contains(&"approved".to_owned()) && !known().contains(&"unspecified".to_owned()));
        #[derive(Deserialize)]
        struct Config {
            letters: Letters,
        }
        let parse = |text: &str| serde_json::from_str::<Config>(text).map(|c| c.letters).map_err(|e| e.to_string());
        let listed = parse(r#"{"letters": ["registered", "created"]}"#).unwrap();
        assert!(listed.allows(REGISTERED) && listed.allows_step(TicketAction::Created));
        assert!(!listed.allows(ANSWER_READY));
        let both = Letters::new(&[REGISTERED, ANSWER_READY]).unwrap();
        assert_eq!(parse(r#"{"letters": "registered, answer_ready"}"#).unwrap(), both);
        assert!(parse(r#"{"letters": ["sent_to_mars"]}"#).unwrap_err().contains("sent_to_mars"));
    }
}
