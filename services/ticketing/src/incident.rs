//! Escalations of a ticket: a situation-center incident (seed 000: the applicant still has no
//! access although every condition holds) or a federal supervisor's check (seed 001: the
//! applicant says the data is still wrong). Each has a small pure state machine of its own; the
//! ticket's workflow goes on beside it, and the organization answers the applicant as usual once
//! the incident is resolved.

/// Who the organization escalated to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The situation center's ITSM (first and second line).
    SituationCenter,
    /// A federal supervisor (e.g. Рособрнадзор); its answer comes back to the organization.
    FederalSupervisor,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SituationCenter => "situation_center",
            Kind::FederalSupervisor => "federal_supervisor",
        }
    }

    pub fn parse(stored: &str) -> Option<Kind> {
        [Kind::SituationCenter, Kind::FederalSupervisor].into_iter().find(|k| k.as_str() == stored)
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

impl State {
    pub const ALL: [State; 7] = [
        State::Open(Line::First),
        State::Open(Line::Second),
        State::InformationRequested(Line::First),
        State::InformationRequested(Line::Second),
        State::Resolved(Line::First),
        State::Resolved(Line::Second),
        State::Confirmed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Open(Line::First) => "open, first line",
            State::Open(Line::Second) => "open, second line",
            State::InformationRequested(Line::First) => "information requested, first line",
            State::InformationRequested(Line::Second) => "information requested, second line",
            State::Resolved(Line::First) => "resolved, first line",
            State::Resolved(Line::Second) => "resolved, second line",
            State::Confirmed => "confirmed",
        }
    }

    pub fn parse(stored: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == stored)
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
        matches!(self, Command::Confirm | Command::RejectResult { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    WrongState { state: State, command: &'static str },
    Invalid(&'static str),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::WrongState { state, command } => {
                write!(f, "{command} is not possible while the incident is {}", state.as_str())
            }
            Refusal::Invalid(why) => write!(f, "{why}"),
        }
    }
}

/// The next state, or why not. A federal supervisor has one line only.
pub fn next(kind: Kind, state: State, command: &Command) -> Result<State, Refusal> {
    let wrong = Err(Refusal::WrongState { state, command: command.name() });
    let required =
        |text: &str, why: &'static str| if text.trim().is_empty() { Err(Refusal::Invalid(why)) } else { Ok(()) };
    match (command, state) {
        (Command::EscalateToSecondLine, State::Open(Line::First)) if kind == Kind::SituationCenter => {
            Ok(State::Open(Line::Second))
        }
        (Command::RequestInformation { comment }, State::Open(line)) => {
            required(comment, "say what information is needed")?;
            Ok(State::InformationRequested(line))
        }
        (Command::InformationReceived { comment }, State::InformationRequested(line)) => {
            required(comment, "a comment is required")?;
            Ok(State::Open(line))
        }
        (Command::Resolve { resolution }, State::Open(line)) => {
            required(resolution, "the resolution is required")?;
            Ok(State::Resolved(line))
        }
        (Command::Confirm, State::Resolved(_)) => Ok(State::Confirmed),
        (Command::RejectResult { reason }, State::Resolved(line)) => {
            required(reason, "a reason is required")?;
            Ok(State::Open(line))
        }
        _ => wrong,
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
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
        for kind in [Kind::SituationCenter, Kind::FederalSupervisor] {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
    }
}
