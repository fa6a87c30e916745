//! The scope check every service runs: each method of the service's API, called by someone who
//! must not reach the object the request names — staff of another organization with the right
//! role, another applicant, or a caller without the method's role — answers `PERMISSION_DENIED`
//! before it reads the rest of the request, so that nothing of another organization leaks: not
//! its data, not whether an object exists, not what a valid request would look like.

use tonic::Code;

use super::Call;

/// The reasons a scope denial may give: the caller's role does not allow the method, the object
/// belongs to another organization, the appeal to another applicant, or a region's setting to
/// an administrator of another region.
pub const DENIAL_REASONS: [&str; 4] = ["ROLE_NOT_ALLOWED", "OTHER_ORGANIZATION", "OTHER_APPLICANT", "OTHER_REGION"];

/// What one method must do for a caller outside the object's scope.
pub enum Scoped {
    /// Answers `PERMISSION_DENIED` with one of [`DENIAL_REASONS`].
    Denied(Call),
    /// Answers, showing the caller only what is theirs: the call asserts that nothing of the
    /// other organization came back (a list filtered by the caller's organization).
    OwnOnly(Call),
    /// Open to every caller by design; the text says why (public reference data).
    Public(&'static str),
    /// Known not to hold yet; the text says what leaks or what is answered instead. Reported, not checked, so that the rest
    /// of the table keeps guarding; the service's own ignored test checks the row itself.
    KnownLeak(&'static str),
}

/// Runs `rows` (method name → what it must do) and asserts each; the table must name every
/// method `service` declares, so a new method without a row fails here. A method may have more
/// than one row (e.g. another organization's staff, and another applicant).
pub async fn assert_every_method_scoped(service: &str, rows: Vec<(&str, Scoped)>) {
    let mut table: Vec<&str> = rows.iter().map(|(method, _)| *method).collect();
    table.sort_unstable();
    table.dedup();
    let mut declared = super::declared_methods(service);
    assert!(!declared.is_empty(), "pos.v1 declares no service {service}");
    declared.sort_unstable();
    assert_eq!(table, declared, "the scope table of {service} covers every method");
    let failures = check(service, rows).await;
    assert!(failures.is_empty(), "{service} is not scoped:\n{}", failures.join("\n"));
}

/// Runs `rows` without asking for every method: for the rows kept out of a service's table as
/// [`Scoped::KnownLeak`].
pub async fn assert_scoped(service: &str, rows: Vec<(&str, Scoped)>) {
    let failures = check(service, rows).await;
    assert!(failures.is_empty(), "{service} is not scoped:\n{}", failures.join("\n"));
}

/// Every row's failure, in the table's order, so that one run names them all.
async fn check(service: &str, rows: Vec<(&str, Scoped)>) -> Vec<String> {
    let mut failures = Vec::new();
    for (method, row) in rows {
        match row {
            Scoped::Denied(call) => match call.await {
                Ok(()) => failures.push(format!("{service}/{method}: answered instead of PERMISSION_DENIED")),
                Err(status) => {
                    let reason = crate::error::reason(&status);
                    if status.code() != Code::PermissionDenied || !DENIAL_REASONS.contains(&reason.as_str()) {
                        failures.push(format!(
                            "{service}/{method}: {:?} {reason:?} ({}) instead of PERMISSION_DENIED with one of \
                             {DENIAL_REASONS:?}",
                            status.code(),
                            status.message()
                        ));
                    }
                }
            },
            Scoped::OwnOnly(call) => {
                if let Err(status) = call.await {
                    failures.push(format!("{service}/{method}: {status:?} instead of the caller's own objects"));
                }
            }
            Scoped::Public(why) => assert!(!why.trim().is_empty(), "{service}/{method}: say why it is public"),
            Scoped::KnownLeak(what) => {
                assert!(!what.trim().is_empty(), "{service}/{method}: say what leaks");
                eprintln!("{service}/{method}: known not to be scoped yet: {what}");
            }
        }
    }
    failures
}
