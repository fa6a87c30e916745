//! The audit trail over gRPC, on servers and embedded: a call refused for its role, a staff
//! member's roles changed by the organization's admin and an SLA policy replaced by a system
//! are listed with their actors, organization, method and time; an admin of another
//! organization sees none of them, and an applicant may not look at all.

use std::process::Command;
use std::time::Duration;

use pos_e2e::{Mode, Platform};
use pos_platform::auth::Role;
use pos_platform::grpc::outgoing;
use pos_platform::testing::{self, eventually};
use pos_proto::v1 as pb;
use pos_proto::v1::operations as ops;
use pos_proto::v1::operations::audit_service_client::AuditServiceClient;
use pos_proto::v1::sla_service_client::SlaServiceClient;

const POS: &str = env!("CARGO_BIN_EXE_pos-under-test");
const MINISTRY: &str = "41-minobr";
const COLLEGE: &str = "41-college-polytech";
const UPSERT_STAFF: &str = "pos.v1.TicketingService/UpsertStaff";
const PUT_POLICY: &str = "pos.v1.SlaService/PutPolicy";

async fn list(
    platform: &Platform,
    token: &str,
    request: ops::ListAuditEventsRequest,
) -> Result<Vec<ops::AuditEvent>, tonic::Status> {
    let answer = AuditServiceClient::new(platform.channel()).list_audit_events(outgoing(request, token)).await?;
    Ok(answer.into_inner().events)
}

fn find<'a>(events: &'a [ops::AuditEvent], kind: &str, method: &str) -> Option<&'a ops::AuditEvent> {
    events.iter().find(|event| event.kind == kind && event.method == method)
}

async fn denial_staff_change_and_policy_change_are_listed(mode: Mode) {
    let platform = Platform::start(mode).await.expect("platform starts");
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - 1;
    let admin = testing::token("admin-minobr", MINISTRY, "41", &[Role::OrgAdmin]);
    let executor = testing::token("executor-minobr", MINISTRY, "41", &[Role::Executor]);
    let system = testing::token("sla-loader", "", "", &[Role::System]);
    let operator = testing::token("duty-operator", "", "", &[Role::Operator]);

    // An executor may not change the staff directory.
    let member = pb::StaffMember {
        subject: "teacher-7".to_owned(),
        organization_id: MINISTRY.to_owned(),
        full_name: "Иванова Мария".to_owned(),
        email: "teacher-7@example.org".to_owned(),
        roles: vec!["executor".to_owned()],
        active: true,
    };
    let refused = platform.ticketing().upsert_staff(outgoing(member.clone(), &executor)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    // Its admin may: first as an executor, then also as a head.
    platform.ticketing().upsert_staff(outgoing(member.clone(), &admin)).await.expect("staff member added");
    let promoted = pb::StaffMember { roles: vec!["executor".to_owned(), "head".to_owned()], ..member };
    platform.ticketing().upsert_staff(outgoing(promoted, &admin)).await.expect("roles changed");
    // A system replaces region 41's policy with what it is now.
    let mut sla = SlaServiceClient::new(platform.channel());
    let policy = sla
        .get_policy(outgoing(pb::GetPolicyRequest { region_code: "41".to_owned() }, &system))
        .await
        .expect("policy of 41")
        .into_inner();
    // Region 41 may have none of its own yet (the default's answers): it gets one.
    let policy = pb::SlaPolicy { region_code: "41".to_owned(), ..policy };
    sla.put_policy(outgoing(policy, &system)).await.expect("policy replaced");

    // Denials are written off the call's path: they appear shortly.
    let p = &platform;
    eventually(Duration::from_secs(20), "the denial is listed", || {
        let operator = operator.clone();
        async move {
            let events = list(p, &operator, ops::ListAuditEventsRequest::default()).await.expect("operator lists");
            find(&events, "denied_permission", UPSERT_STAFF).is_some()
        }
    })
    .await;
    let events = list(&platform, &operator, ops::ListAuditEventsRequest::default()).await.unwrap();
    let at = |event: &ops::AuditEvent| event.at.as_ref().map(|at| (at.seconds, at.nanos)).expect("a time");
    let ordered: Vec<_> = events.iter().map(at).collect();
    assert!(ordered.windows(2).all(|pair| pair[0] >= pair[1]), "newest first: {events:#?}");

    let denial = find(&events, "denied_permission", UPSERT_STAFF).expect("the denial");
    assert_eq!(denial.actor_subject, "executor-minobr");
    assert_eq!((denial.actor_organization_id.as_str(), denial.organization_id.as_str()), (MINISTRY, MINISTRY));
    assert_eq!(denial.actor_roles, ["executor"]);
    assert_eq!(denial.outcome, "ROLE_NOT_ALLOWED");
    assert_eq!(denial.service, "ticketing");
    assert!(at(denial).0 >= started, "{denial:?}");

    let changes: Vec<_> =
        events.iter().filter(|event| event.kind == "staff_changed" && event.method == UPSERT_STAFF).collect();
    assert_eq!(changes.len(), 2, "{events:#?}");
    let promotion = changes[0];
    assert_eq!(promotion.actor_subject, "admin-minobr");
    assert_eq!(promotion.actor_roles, ["org_admin"]);
    assert_eq!((promotion.organization_id.as_str(), promotion.object_id.as_str()), (MINISTRY, "teacher-7"));
    let details: serde_json::Value = serde_json::from_str(&promotion.details_json).unwrap();
    assert_eq!(details["roles_before"], serde_json::json!(["executor"]), "{details}");
    assert_eq!(details["roles_after"], serde_json::json!(["executor", "head"]), "{details}");
    assert!(!promotion.details_json.contains("Иванова"), "no names in the trail: {details}");

    let policy_change = find(&events, "policy_changed", PUT_POLICY).expect("the policy change");
    assert_eq!((policy_change.actor_subject.as_str(), policy_change.object_id.as_str()), ("sla-loader", "41"));
    assert_eq!(policy_change.actor_roles, ["system"]);
    assert_eq!(policy_change.service, "sla");

    // Filters: by kind and actor, and pages that follow each other.
    let request = ops::ListAuditEventsRequest {
        kinds: vec!["staff_changed".to_owned()],
        actor_subject: "admin-minobr".to_owned(),
        limit: 1,
        ..Default::default()
    };
    let first = AuditServiceClient::new(platform.channel())
        .list_audit_events(outgoing(request.clone(), &operator))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.events.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let second =
        list(&platform, &operator, ops::ListAuditEventsRequest { page_token: first.next_page_token, ..request })
            .await
            .unwrap();
    assert_eq!(second.len(), 1);
    assert_ne!(first.events[0].id, second[0].id);

    // The ministry's admin sees the ministry's events, not the system's policy change.
    let own = list(&platform, &admin, ops::ListAuditEventsRequest::default()).await.expect("admin lists");
    assert!(find(&own, "denied_permission", UPSERT_STAFF).is_some());
    assert!(own.iter().all(|event| event.organization_id == MINISTRY), "{own:#?}");
    // Another organization's admin sees none of them, and may not ask for them.
    let stranger = testing::token("admin-college", COLLEGE, "41", &[Role::OrgAdmin]);
    let theirs = list(&platform, &stranger, ops::ListAuditEventsRequest::default()).await.expect("lists own");
    assert!(theirs.iter().all(|event| event.organization_id == COLLEGE), "{theirs:#?}");
    let asked = ops::ListAuditEventsRequest { organization_id: MINISTRY.to_owned(), ..Default::default() };
    let refused = list(&platform, &stranger, asked).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    // An applicant may not look at all; a bad filter is named.
    let applicant = testing::token("citizen-1", "", "", &[Role::Applicant]);
    let refused = list(&platform, &applicant, ops::ListAuditEventsRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let bad = ops::ListAuditEventsRequest { kinds: vec!["everything".to_owned()], ..Default::default() };
    assert_eq!(list(&platform, &operator, bad).await.unwrap_err().code(), tonic::Code::InvalidArgument);

    // `pos audit` shows the same trail.
    if mode == Mode::Embedded {
        let out = tokio::task::block_in_place(|| {
            Command::new(POS)
                .args(["--endpoint", &platform.endpoint, "--token", &operator, "audit", "--since", "1h", "--json"])
                .args(["--kind", "policy_changed,denied_permission"])
                .env("POS_AUTH__HS256_SECRET", testing::TEST_SECRET)
                .output()
                .expect("pos runs")
        });
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let kinds: Vec<&str> =
            listed["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"policy_changed") && kinds.contains(&"denied_permission"), "{listed}");
        assert!(kinds.iter().all(|kind| *kind != "staff_changed"), "{listed}");
    }
    platform.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trail_on_servers() {
    denial_staff_change_and_policy_change_are_listed(Mode::Servers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trail_embedded() {
    denial_staff_change_and_policy_change_are_listed(Mode::Embedded).await;
}
