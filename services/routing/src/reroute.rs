//! `ticket.reroute_requested` → a new decision → `appeal.routed` again for the same appeal.
//!
//! The appeal's first decision stays as it was; each reroute is a decision of its own, keyed by
//! the ticket that asked (a redelivered request decides nothing twice). A redirect goes to the
//! named organization; a return to coordination goes to the parent. Neither loses the appeal:
//! an unknown or unconnected addressee sends it further up, to the first connected ancestor,
//! and at the top to the configured fallback cabinet — with the reason in the explanation.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use pos_platform::consumer::{HandleError, Handler};
use pos_platform::{Envelope, Tx};
use pos_proto::v1::events::{AppealRouted, TicketRerouteRequested};
use sqlx::Row;

use crate::config::RoutingConfig;
use crate::consumer::{Terms, routed_event};
use crate::model::{Directory, Organization};
use crate::resolve;
use crate::snapshot::Snapshots;
use crate::store;

pub const QUEUE: &str = "routing.reroute-requested";

pub struct RerouteRequestedHandler {
    snapshots: Arc<Snapshots>,
    config: Arc<RoutingConfig>,
}

impl RerouteRequestedHandler {
    pub fn new(snapshots: Arc<Snapshots>, config: Arc<RoutingConfig>) -> RerouteRequestedHandler {
        RerouteRequestedHandler { snapshots, config }
    }
}

/// The first connected organization from `start` upwards (itself included).
fn connected_from<'a>(directory: &'a Directory, start: Option<&'a Organization>) -> Option<&'a Organization> {
    let mut current = start;
    // The depth bound guards against a parent cycle in the data.
    for _ in 0..64 {
        match current {
            Some(org) if org.connected => return Some(org),
            Some(org) => current = directory.parent(org),
            None => return None,
        }
    }
    None
}

/// An organization by its name, or its id where the directory does not know it.
fn named(directory: &Directory, organization_id: &str) -> String {
    directory.organization(organization_id).map_or_else(|| format!("[{organization_id}]"), resolve::name)
}

/// Where the appeal goes, and why, in the words of the cabinet's explanation; `None` when no
/// connected organization stands above the one that asked.
pub fn target<'a>(
    directory: &'a Directory,
    from_organization_id: &str,
    requested_to: &str,
) -> Option<(&'a Organization, String)> {
    let from = directory.organization(from_organization_id);
    let from_name = named(directory, from_organization_id);
    let parent = || connected_from(directory, from.and_then(|f| directory.parent(f)));
    if requested_to.is_empty() {
        return parent().map(|up| {
            (up, format!("Организация {from_name} вернула обращение на координацию в {}", resolve::name(up)))
        });
    }
    match directory.organization(requested_to) {
        Some(to) if to.connected => {
            Some((to, format!("Организация {from_name} перенаправила обращение в {}", resolve::name(to))))
        }
        Some(to) => connected_from(directory, directory.parent(to)).map(|up| {
            let reason = format!(
                "Организация {from_name} перенаправила обращение в {}, но она не подключена к платформе; обращение \
                 передано вышестоящей организации {}",
                resolve::name(to),
                resolve::name(up)
            );
            (up, reason)
        }),
        None => parent().map(|up| {
            let reason = format!(
                "Организация {from_name} перенаправила обращение в [{requested_to}], но такой организации нет в \
                 справочнике; обращение возвращено на координацию в {}",
                resolve::name(up)
            );
            (up, reason)
        }),
    }
}

#[async_trait]
impl Handler for RerouteRequestedHandler {
    type Event = TicketRerouteRequested;

    async fn handle(
        &self,
        tx: &mut Tx,
        request: TicketRerouteRequested,
        envelope: &Envelope,
    ) -> Result<(), HandleError> {
        if request.appeal_id.is_empty() || request.ticket_id.is_empty() || request.from_organization_id.is_empty() {
            return Err(HandleError::poison(anyhow::anyhow!("ticket.reroute_requested without its ids")));
        }
        let snapshot = self.snapshots.current(tx).await?;
        let directory = &snapshot.directory;
        let fallback = self.config.fallback();
        let (organization, explanation) =
            match target(directory, &request.from_organization_id, &request.to_organization_id) {
                Some((org, why)) => (org.clone(), why),
                None => match directory.organization(&fallback.organization_id) {
                    Some(org) => {
                        let why = format!(
                            "Выше организации {} нет подключённой к платформе организации; обращение передано в \
                             резервный кабинет платформы {}",
                            named(directory, &request.from_organization_id),
                            resolve::name(org)
                        );
                        (org.clone(), why)
                    }
                    None => {
                        return Err(HandleError::poison(anyhow::anyhow!(
                            "no connected addressee above {}, and no fallback organization",
                            request.from_organization_id
                        )));
                    }
                },
            };
        // The coordinator's own words, as they wrote them.
        let explanation = if request.reason.trim().is_empty() {
            format!("{explanation}.")
        } else {
            format!("{explanation}. Причина: {}", request.reason.trim())
        };
        let now = Utc::now();
        let inserted = sqlx::query(
            "INSERT INTO routing_reroutes (ticket_id, appeal_id, from_organization_id, requested_to, organization_id, \
             explanation, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (ticket_id) DO NOTHING",
        )
        .bind(&request.ticket_id)
        .bind(&request.appeal_id)
        .bind(&request.from_organization_id)
        .bind(&request.to_organization_id)
        .bind(&organization.id)
        .bind(&explanation)
        .bind(pos_platform::db::to_micros(now))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tracing::info!(ticket_id = %request.ticket_id, "reroute already decided, nothing to do");
            return Ok(());
        }
        // The appeal's deadline terms and content are those of its first decision, committed
        // with the `appeal.routed` that created the asking ticket whenever this deployment
        // routed the appeal. The reroute announces them again, so that every reader gets the
        // same complete event as from a first routing (the SLA service moves the clock, ticketing
        // fills the new ticket, notify writes to the applicant). Without it (an appeal first
        // routed by another deployment) the content is unknown and the readers keep their own.
        let first = store::decision(tx, &request.appeal_id).await?;
        let region_code =
            if request.region_code.is_empty() { envelope.region().to_owned() } else { request.region_code };
        let time_zone = directory
            .region(&organization.region_code)
            .map(|r| r.time_zone.clone())
            .or_else(|| first.as_ref().map(|d| d.time_zone.clone()))
            .unwrap_or(fallback.time_zone);
        let content = first.as_ref().map(|d| d.content.clone()).unwrap_or_default();
        let fact_id = first.as_ref().map(|d| d.fact_id.clone()).unwrap_or_default();
        let names = snapshot.classifier.names(&content.category_id, &content.subcategory_id, &fact_id);
        let terms = Terms {
            time_zone,
            period_days: first.as_ref().map(|d| d.period_days).unwrap_or_default(),
            working_days: first.as_ref().is_some_and(|d| d.working_days),
            fast_track: first.as_ref().is_some_and(|d| d.fast_track),
        };
        let number = first.as_ref().map(|d| d.number).unwrap_or_default();
        let routed = AppealRouted {
            explanation,
            reroute: true,
            ..routed_event(
                &request.appeal_id,
                number,
                &region_code,
                &fact_id,
                &content,
                names,
                &organization,
                terms,
                now,
            )
        };
        let routing_region =
            if organization.region_code.is_empty() { region_code.as_str() } else { organization.region_code.as_str() };
        pos_platform::outbox::enqueue(tx, &Envelope::new(&routed, routing_region).with_appeal(&request.appeal_id))
            .await?;
        metrics::counter!("pos_routing_reroutes_total").increment(1);
        tracing::info!(
            appeal_id = %request.appeal_id,
            ticket_id = %request.ticket_id,
            from_organization_id = %request.from_organization_id,
            organization_id = %organization.id,
            "appeal rerouted"
        );
        Ok(())
    }
}

/// The reroutes of an appeal, oldest first: (ticket that asked, where it went).
pub async fn reroutes(db: &pos_platform::Db, appeal_id: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT ticket_id, organization_id FROM routing_reroutes WHERE appeal_id = $1 ORDER BY decided_at, ticket_id",
    )
    .bind(appeal_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(|row| Ok((row.try_get("ticket_id")?, row.try_get("organization_id")?))).collect()
}
