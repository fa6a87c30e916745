//! Escalations of a ticket: a situation-center incident (seed 000: the applicant still has no
//! access although every condition holds) or a federal supervisor's check (seed 001: the
//! applicant says the data is still wrong). Each has a small pure state machine of its own; the
//! ticket's workflow goes on beside it, and the organization answers the applicant as usual once
//! the incident is resolved.

use strum::VariantArray;

/// Who the organization escalated to; stored snake_case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Kind {
    /// The situation center's ITSM (first and second line).
    SituationCenter,
    /// A federal supervisor (e.g. Рособрнадзор); its answer comes back to the organization.
    FederalSupervisor,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    First,
    Second,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Being worked on by `line`.
    Open(Line),
    /// Waiting for the applicant; the ticket's answer clock is paused meanwhile.
    InformationRequested(Line),
    /// The line reports a result; the applicant confirms or rejects it.
    Resolved(Line),
    /// The applicant confirmed the result (final).
    Confirmed,
}

/// A [`State`] as stored and shown (`Incident.state` on the wire): one name per state and line.
/// The state machine works on [`State`], whose line is data; strum needs unit variants, so the
/// names live here and [`State::as_str`]/[`State::parse`] convert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
enum StoredState {
    #[strum(serialize = "open, first line")]
    OpenFirstLine,
    #[strum(serialize = "open, second line")]
    OpenSecondLine,
    #[strum(serialize = "information requested, first line")]
    InformationRequestedFirstLine,
    #[strum(serialize = "information requested, second line")]
    InformationRequestedSecondLine,
    #[strum(serialize = "resolved, first line")]
    ResolvedFirstLine,
    #[strum(serialize = "resolved, second line")]
    ResolvedSecondLine,
    #[strum(serialize = "confirmed")]
    Confirmed,
}

impl From<State> for StoredState {
    fn from(state: State) -> StoredState {
        match state {
            State::Open(Line::First) => StoredState::OpenFirstLine,
            State::Open(Line::Second) => StoredState::OpenSecondLine,
            State::InformationRequested(Line::First) => StoredState::InformationRequestedFirstLine,
            State::InformationRequested(Line::Second) => StoredState::InformationRequestedSecondLine,
            State::Resolved(Line::First) => StoredState::ResolvedFirstLine,
            State::Resolved(Line::Second) => StoredState::ResolvedSecondLine,
            State::Confirmed => StoredState::Confirmed,
        }
    }
}

impl From<StoredState> for State {
    fn from(stored: StoredState) -> State {
        match stored {
            StoredState::OpenFirstLine => State::Open(Line::First),
            StoredState::OpenSecondLine => State::Open(Line::Second),
            StoredState::InformationRequestedFirstLine => State::InformationRequested(Line::First),
            StoredState::InformationRequestedSecondLine => State::InformationRequested(Line::Second),
            StoredState::ResolvedFirstLine => State::Resolved(Line::First),
            StoredState::ResolvedSecondLine => State::Resolved(Line::Second),
            StoredState::Confirmed => State::Confirmed,
        }
    }
}

impl State {
    /// Every state, one per stored name.
    pub fn all() -> impl Iterator<Item = State> {
        StoredState::VARIANTS.iter().map(|stored| State::from(*stored))
    }

    /// The stored name, e.g. "open, first line".
    pub fn as_str(self) -> &'static str {
        StoredState::from(self).into()
    }

    pub fn parse(stored: &str) -> Option<State> {
        stored.parse::<StoredState>().ok().map(State::from)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// First line hands it to the second (diagnosis and restoration).
    EscalateToSecondLine,
    RequestInformation {
        comment: String,
    },
    InformationReceived {
        comment: String,
    },
    Resolve {
        resolution: String,
    },
    /// The applicant accepts the result.
    Confirm,
    /// The applicant rejects the result; a reason is required, and it goes back to work.
    RejectResult {
        reason: String,
    },
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::EscalateToSecondLine => "escalated to the second line",
            Command::RequestInformation { .. } => "information requested",
            Command::InformationReceived { .. } => "information received",
            Command::Resolve { .. } => "resolved",
            Command::Confirm => "result confirmed",
            Command::RejectResult { .. } => "result rejected",
        }
    }

    /// Whether the applicant (rather than the handling line) issues it.
    pub fn by_applicant(&self) -> bool {
        match self {
            Command::Confirm | Command::RejectResult { .. } => true,
            Command::EscalateToSecondLine
            | Command::RequestInformation { .. }
            | Command::InformationReceived { .. }
            | Command::Resolve { .. } => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{command} is not possible while the incident is {}", .state.as_str())]
    WrongState { state: State, command: &'static str },
    /// The command's text (the request's comment) is missing.
    #[error("{0}")]
    Invalid(&'static str),
}

/// The next state, or why not. A federal supervisor has one line only.
pub fn next(kind: Kind, state: State, command: &Command) -> Result<State, Refusal> {
    let wrong = || Refusal::WrongState { state, command: command.name() };
    let required =
        |text: &str, why: &'static str| if text.trim().is_empty() { Err(Refusal::Invalid(why)) } else { Ok(()) };
    match command {
        Command::EscalateToSecondLine => {
            if kind == Kind::SituationCenter && state == State::Open(Line::First) {
                Ok(State::Open(Line::Second))
            } else {
                Err(wrong())
            }
        }
        Command::RequestInformation { comment } => {
            let State::Open(line) = state else { return Err(wrong()) };
            required(comment, "say what information is needed")?;
            Ok(State::InformationRequested(line))
        }
        Command::InformationReceived { comment } => {
            let State::InformationRequested(line) = state else { return Err(wrong()) };
            required(comment, "a comment is required")?;
            Ok(State::Open(line))
        }
        Command::Resolve { resolution } => {
            let State::Open(line) = state else { return Err(wrong()) };
            required(resolution, "the resolution is required")?;
            Ok(State::Resolved(line))
        }
        Command::Confirm => {
            let State::Resolved(_) = state else { return Err(wrong()) };
            Ok(State::Confirmed)
        }
        Command::RejectResult { reason } => {
            let State::Resolved(line) = state else { return Err(wrong()) };
            required(reason, "a reason is required")?;
            Ok(State::Open(line))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_situation_center_incident_through_both_lines() {
        let k = Kind::SituationCenter;
        let mut s = State::Open(Line::First);
        s = next(k, s, &Command::RequestInformation { comment: "screenshot".into() }).unwrap();
        assert_eq!(s, State::InformationRequested(Line::First));
        assert!(next(k, s, &Command::Resolve { resolution: "x".into() }).is_err(), "waits for the applicant");
        s = next(k, s, &Command::InformationReceived { comment: "attached".into() }).unwrap();
        s = next(k, s, &Command::EscalateToSecondLine).unwrap();
        s = next(k, s, &Command::Resolve { resolution: "account re-linked".into() }).unwrap();
        assert_eq!(s, State::Resolved(Line::Second));
        assert_eq!(
            next(k, s, &Command::RejectResult { reason: String::new() }),
            Err(Refusal::Invalid("a reason is required"))
        );
        s = next(k, s, &Command::RejectResult { reason: "still no access".into() }).unwrap();
        assert_eq!(s, State::Open(Line::Second), "rejected: back to work on the same line");
        s = next(k, s, &Command::Resolve { resolution: "cache cleared".into() }).unwrap();
        s = next(k, s, &Command::Confirm).unwrap();
        assert_eq!(s, State::Confirmed);
        for command in [Command::Confirm, Command::EscalateToSecondLine, Command::Resolve { resolution: "x".into() }] {
            assert!(next(k, s, &command).is_err(), "confirmed is final");
        }
    }

    #[test]
    fn a_federal_supervisor_has_one_line() {
        let s = State::Open(Line::First);
        assert!(next(Kind::FederalSupervisor, s, &Command::EscalateToSecondLine).is_err());
        let s = next(Kind::FederalSupervisor, s, &Command::Resolve { resolution: "data corrected in FRDO".into() });
        assert_eq!(s, Ok(State::Resolved(Line::First)));
    }

    #[test]
    fn stored_names_round_trip() {
        for state in State::all() {
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
        assert_eq!(State::all().count(), 7);
        assert_eq!(State::Open(Line::First).as_str(), "open, first line");
        for &kind in Kind::VARIANTS {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
        }
        assert_eq!(Kind::SituationCenter.as_str(), "situation_center");
    }
}
