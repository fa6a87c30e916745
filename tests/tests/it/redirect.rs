//! A redirect end to end: a coordinator of the regional center redirects an appeal to the
//! municipal department, and the deadline goes with it. The new organization's coordinator
//! reads it (the old one no longer may), the new card shows it, and the breach is the new
//! organization's; with the region's policy keeping the deadline, and with a new period from
//! the redirect. Every consumer of `appeal.routed` accepts the reroute's event as it accepts a
//! first routing's (nothing is dead-lettered, each shows the new addressee).
//!
//! And one period, visible where it is set: an operator changes a fact's period in the SLA
//! policy, and the dry run, `pos classifier` and the next appeal's deadline all use it.

use std::future::Future;
use std::time::{Duration, Instant};

use pos_e2e::{KAMCHATKA_CENTER, Mode, Platform, e_diary_appeal};
use pos_platform::auth::Role;
use pos_platform::grpc::outgoing;
use pos_platform::testing;
use pos_proto::v1 as pb;
use pos_proto::v1::sla_service_client::SlaServiceClient;

/// A connected municipal department of Kamchatka, under the regional ministry.
const DEPARTMENT: &str = "41-uo-petropavlovsk";

fn coordinator(organization_id: &str) -> String {
    testing::token(&format!("coordinator-{organization_id}"), organization_id, "41", &[Role::Coordinator])
}

fn system() -> String {
    testing::token("e2e-system", "", "", &[Role::System])
}

/// Polls `probe` until it returns `Some`, or fails with `what` after `timeout`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The appeal's ticket as `organization_id`'s coordinator reads it, once `ready` holds.
async fn card(
    platform: &Platform,
    appeal_id: &str,
    organization_id: &str,
    ready: impl Fn(&pb::Ticket) -> bool,
) -> pb::Ticket {
    let token = coordinator(organization_id);
    eventually(Duration::from_secs(60), &format!("{organization_id}'s card of {appeal_id}"), || {
        let request = outgoing(
            pb::GetTicketRequest { key: Some(pb::get_ticket_request::Key::AppealId(appeal_id.to_owned())) },
            &token,
        );
        let mut client = platform.ticketing();
        let ready = &ready;
        async move {
            let ticket = client.get_ticket(request).await.ok()?.into_inner();
            let ours = ticket.organization.as_ref().is_some_and(|o| o.id == organization_id);
            (ours && ready(&ticket)).then_some(ticket)
        }
    })
    .await
}

async fn deadlines(platform: &Platform, appeal_id: &str, token: &str) -> Result<pb::Deadlines, tonic::Status> {
    let request = outgoing(pb::GetDeadlinesRequest { appeal_id: appeal_id.to_owned() }, token);
    SlaServiceClient::new(platform.channel()).get_deadlines(request).await.map(tonic::Response::into_inner)
}

/// A deadline's due time, in whole seconds since the epoch (deadlines have no fractions).
fn due_of(deadline: &Option<pb::Deadline>) -> Option<i64> {
    deadline.as_ref().and_then(|d| d.due.as_ref()).and_then(|d| d.utc).map(|t| t.seconds)
}

/// Submits the Kamchatka e-diary appeal and waits until the regional center's card shows its
/// deadline; returns the appeal id and the card.
async fn submitted(platform: &Platform) -> (String, pb::Ticket) {
    let operator = testing::token("operator-1", "", "41", &[Role::Operator]);
    let appeal_id = platform
        .intake()
        .submit_appeal(outgoing(e_diary_appeal(&testing::unique("redirect")), &operator))
        .await
        .expect("accepted")
        .into_inner()
        .appeal_id;
    let ticket = card(platform, &appeal_id, KAMCHATKA_CENTER, |t| t.answer_due.is_some()).await;
    (appeal_id, ticket)
}

/// The regional center's coordinator redirects the ticket to [`DEPARTMENT`].
async fn redirect(platform: &Platform, ticket: &pb::Ticket) {
    let request = pb::RedirectRequest {
        ticket_id: ticket.id.clone(),
        expected_version: ticket.version,
        to_organization_id: DEPARTMENT.into(),
        reason: "вопрос муниципального органа управления образованием".into(),
    };
    let redirected =
        platform.ticketing().redirect(outgoing(request, &coordinator(KAMCHATKA_CENTER))).await.expect("redirected");
    assert_eq!(redirected.into_inner().status, "redirected");
}

/// Region 41's policy, as the default one but for `redirect_keeps_deadline`.
async fn set_redirect_policy(platform: &Platform, keeps: bool) {
    let mut sla = SlaServiceClient::new(platform.channel());
    let request = outgoing(pb::GetPolicyRequest { region_code: "41".into() }, &system());
    let mut policy = sla.get_policy(request).await.expect("policy").into_inner();
    policy.region_code = "41".into();
    policy.redirect_keeps_deadline = keeps;
    sla.put_policy(outgoing(policy, &system())).await.expect("policy saved");
}

async fn assert_no_dead_letters(platform: &Platform) {
    for spec in &platform.queues {
        let dead = platform.infra.bus.drain_dead_letters(spec, 10).await.expect("dead letters readable");
        assert!(dead.is_empty(), "dead letters in {}: {dead:?}", spec.name);
    }
}

/// Brings the appeal's pending breach forward to now, instead of waiting ten days for it: the
/// timer loop then fires it as it would on the day.
async fn breach_now(platform: &Platform, appeal_id: &str) {
    let (_, migrations) = pos::up::SERVICES.iter().find(|(name, _)| *name == "sla").expect("sla");
    let db = platform.infra.database("sla", migrations).await.expect("sla database");
    let moved =
        sqlx::query("UPDATE timers SET due_at = $1 WHERE appeal_id = $2 AND kind = 'overdue' AND fired_at IS NULL")
            .bind(pos_platform::db::now_micros())
            .bind(appeal_id)
            .execute(db.pool())
            .await
            .expect("timers moved")
            .rows_affected();
    assert!(moved >= 1, "the appeal has a pending breach");
    db.close().await;
}

async fn redirect_hands_the_deadline_over(mode: Mode) {
    let platform = Platform::start(mode).await.expect("platform starts");

    // The region keeps the deadline through a redirect (the default policy).
    let (appeal_id, before) = submitted(&platform).await;
    let original = deadlines(&platform, &appeal_id, &coordinator(KAMCHATKA_CENTER)).await.expect("the center's");
    redirect(&platform, &before).await;

    // The new card shows the deadline, the same as before.
    let after = card(&platform, &appeal_id, DEPARTMENT, |t| t.answer_due.is_some()).await;
    assert_ne!(after.id, before.id);
    assert_eq!(after.answer_due, before.answer_due, "the kept deadline");
    assert_eq!(after.answer_due.as_ref().map(|t| t.seconds), due_of(&original.answer));
    assert_eq!(
        (after.public_text.as_str(), after.fact_id.as_str()),
        (before.public_text.as_str(), before.fact_id.as_str())
    );
    // The new organization's coordinator reads the deadline; the old one may not any more.
    let theirs = eventually(Duration::from_secs(30), "the department's deadline", || async {
        deadlines(&platform, &appeal_id, &coordinator(DEPARTMENT)).await.ok()
    })
    .await;
    assert_eq!(due_of(&theirs.answer), due_of(&original.answer));
    let denied = deadlines(&platform, &appeal_id, &coordinator(KAMCHATKA_CENTER)).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    // One redirect, one entry in the SLA log.
    let log = SlaServiceClient::new(platform.channel())
        .get_sla_log(outgoing(pb::GetSlaLogRequest { appeal_id: appeal_id.clone() }, &coordinator(DEPARTMENT)))
        .await
        .expect("log")
        .into_inner();
    let kinds: Vec<&str> = log.entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["armed", "kept"], "{log:?}");
    // The applicant's view names the new addressee: intake took the reroute too.
    let appeal = platform
        .intake()
        .get_appeal(outgoing(pb::GetAppealRequest { appeal_id: appeal_id.clone() }, &system()))
        .await
        .expect("appeal")
        .into_inner();
    assert_eq!(appeal.routing.and_then(|r| r.organization).map(|o| o.id), Some(DEPARTMENT.to_owned()));

    // The breach is the new organization's: its card turns overdue, the deadline says so.
    breach_now(&platform, &appeal_id).await;
    let overdue = card(&platform, &appeal_id, DEPARTMENT, |t| t.overdue).await;
    assert_eq!(overdue.id, after.id);
    let theirs = deadlines(&platform, &appeal_id, &coordinator(DEPARTMENT)).await.expect("deadline");
    assert!(theirs.answer.is_some_and(|a| a.overdue));

    // The region now starts a new period at a redirect.
    set_redirect_policy(&platform, false).await;
    let (appeal_id, before) = submitted(&platform).await;
    let first = deadlines(&platform, &appeal_id, &coordinator(KAMCHATKA_CENTER)).await.expect("the center's");
    let redirected_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    redirect(&platform, &before).await;
    let after = card(&platform, &appeal_id, DEPARTMENT, |t| t.answer_due.is_some()).await;
    let theirs = eventually(Duration::from_secs(30), "the department's new period", || async {
        deadlines(&platform, &appeal_id, &coordinator(DEPARTMENT)).await.ok()
    })
    .await;
    let answer = theirs.answer.clone().expect("answer deadline");
    let started = answer.started.as_ref().and_then(|s| s.utc).map(|t| t.seconds).expect("started");
    let registered = first.answer.and_then(|a| a.started).and_then(|s| s.utc).map(|t| t.seconds).expect("registered");
    assert!(started >= redirected_at - 1, "a new period from the redirect: {answer:?}");
    assert!(registered <= started);
    let log = SlaServiceClient::new(platform.channel())
        .get_sla_log(outgoing(pb::GetSlaLogRequest { appeal_id: appeal_id.clone() }, &coordinator(DEPARTMENT)))
        .await
        .expect("log")
        .into_inner();
    let last = log.entries.last().expect("entries");
    assert_eq!((log.entries.len(), last.kind.as_str()), (2, "armed"), "{log:?}");
    assert!(last.detail.contains("a new period"), "{}", last.detail);
    assert_eq!(
        after.answer_due.as_ref().map(|t| t.seconds),
        due_of(&theirs.answer),
        "the card shows the new period's deadline"
    );
    let denied = deadlines(&platform, &appeal_id, &coordinator(KAMCHATKA_CENTER)).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    assert_no_dead_letters(&platform).await;
    platform.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_hands_the_deadline_over_embedded() {
    redirect_hands_the_deadline_over(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_hands_the_deadline_over_on_servers() {
    redirect_hands_the_deadline_over(Mode::Servers).await;
}

/// One period, visible where it is set: the SLA policy's period is what the dry run and
/// `pos classifier` show, and what the next appeal's deadline uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_period_from_the_policy_everywhere() {
    let platform = Platform::start(Mode::Embedded).await.expect("platform starts");
    let fact = "education.e-diary.access";
    let resolve = || async {
        let request = pb::ResolveRequest { region_code: "41".into(), fact_id: fact.into(), ..Default::default() };
        platform.routing().resolve(outgoing(request, &system())).await.expect("resolved").into_inner()
    };
    // Before: the fast-track period, as the policy gives it.
    let resolution = resolve().await;
    assert_eq!((resolution.period_days, resolution.working_days, resolution.fast_track), (10, false, true));

    // An operator gives the fact three working days in region 41.
    let mut sla = SlaServiceClient::new(platform.channel());
    let request = outgoing(pb::GetPolicyRequest { region_code: "41".into() }, &system());
    let mut policy = sla.get_policy(request).await.expect("policy").into_inner();
    policy.region_code = "41".into();
    policy.facts.push(pb::SlaFactPeriod {
        fact_id: fact.into(),
        period: Some(pb::SlaPeriod { days: 3, working_days: true }),
        move_to_next_working_day: None,
    });
    sla.put_policy(outgoing(policy, &system())).await.expect("policy saved");

    let resolution = resolve().await;
    assert_eq!((resolution.period_days, resolution.working_days), (3, true), "{}", resolution.explanation);
    // The period step names the policy it came from, in the words the coordinator reads.
    assert!(
        resolution.steps.iter().any(|s| s.rule == "period" && s.reason.contains("по политике сроков региона")),
        "{:?}",
        resolution.steps
    );
    let (_, policy_region, periods) =
        pos::ops::effective_periods(platform.channel(), &system(), "41").await.expect("pos classifier");
    assert_eq!(policy_region, "41");
    let shown = periods.iter().find(|p| p.fact_id == fact).expect("the fact");
    assert_eq!(shown.label(), "3 working days ⚡");
    // Other regions keep the default.
    let (_, _, elsewhere) = pos::ops::effective_periods(platform.channel(), &system(), "16").await.unwrap();
    assert_eq!(elsewhere.iter().find(|p| p.fact_id == fact).unwrap().label(), "10 calendar days ⚡");

    // The next appeal's deadline uses it.
    let (appeal_id, ticket) = submitted(&platform).await;
    let theirs = deadlines(&platform, &appeal_id, &coordinator(KAMCHATKA_CENTER)).await.expect("deadline");
    let answer = theirs.answer.expect("answer");
    assert_eq!(answer.period, "3 working days");
    assert_eq!(ticket.answer_due.as_ref().map(|t| t.seconds), due_of(&Some(answer)));
    platform.stop().await.expect("stops");
}
