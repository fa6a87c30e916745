//! What the cabinet tells on `/metrics`: tickets created and how long their appeals took to get
//! there, how long staff take to act first, re-reviews and closings as they happen, and the open
//! tickets of each folder sampled from the store (see `pos_platform::metrics` for the
//! descriptions).

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use pos_platform::db::Db;
use pos_platform::host::Sampler;
use sqlx::Row;
use strum::VariantArray;

use crate::folder::Folder;
use crate::store::tickets::Ticket;
use crate::workflow::{Effect, Stage, Transition};

/// A ticket was created in its organization's New folder. `first`: the appeal's first ticket,
/// whose receipt time is the appeal's registration (a reroute's keeps that time too, and its
/// wait would count the previous organization's work).
///
/// Recorded in the consumer's transaction, as the other consumers record theirs: a delivery
/// whose commit fails is handled again and counted again, an overcount as rare as such commits.
pub fn ticket_created(ticket: &Ticket, first: bool) {
    metrics::counter!("pos_tickets_created_total", "region" => ticket.region_code.clone()).increment(1);
    if first {
        let waited = (ticket.created_at - ticket.received_at).to_std().unwrap_or_default();
        metrics::histogram!("pos_appeal_ticketed_seconds").record(waited.as_secs_f64());
    }
}

/// The version a ticket is created with; only workflow commands move it on while it is current
/// (the reroute that supersedes it moves it too, but ends it).
const CREATED_VERSION: i64 = 1;

/// A workflow command was committed: `after` is the ticket as it left it.
pub fn command_applied(after: &Ticket, transition: &Transition, by_staff: bool) {
    let region = after.region_code.clone();
    if by_staff && after.version == CREATED_VERSION + 1 {
        let waited = (after.updated_at - after.created_at).to_std().unwrap_or_default();
        metrics::histogram!("pos_ticket_first_action_seconds").record(waited.as_secs_f64());
    }
    if transition.effects.contains(&Effect::Reopen) {
        metrics::counter!("pos_tickets_reopened_total", "region" => region.clone()).increment(1);
    }
    if closes(transition.to.stage()) && !closes(transition.from) {
        metrics::counter!("pos_tickets_closed_total", "region" => region).increment(1);
    }
}

/// Whether the organization's work on a ticket is done in `stage`: its answer went out, the
/// appeal was rejected, or a re-review was stopped. The applicant may still send an answer back
/// (a re-review reopens it); a ticket that left for another organization was handed over, not
/// closed.
fn closes(stage: Stage) -> bool {
    match stage {
        Stage::Answered | Stage::Accepted | Stage::Rejected | Stage::ReviewStopped => true,
        Stage::New
        | Stage::InWork
        | Stage::ExecutorAssigned
        | Stage::AnswerPrepared
        | Stage::InformationRequested
        | Stage::OnAgreement
        | Stage::OnApproval
        | Stage::Returned
        | Stage::Redirected
        | Stage::ReturnedToCoordination => false,
    }
}

/// `pos_tickets{folder,region}`: the tickets in each cabinet folder that may still change (not
/// in a final stage), by the appeal's region. Every folder of every region seen since start is
/// set, to zero when empty, so that a folder emptied does not keep its last count.
#[derive(Default)]
pub struct OpenTickets {
    regions: BTreeSet<String>,
}

#[async_trait]
impl Sampler for OpenTickets {
    async fn sample(&mut self, db: &Db) -> anyhow::Result<()> {
        let counts = open_tickets(db).await?;
        self.regions.extend(counts.keys().map(|(region, _)| region.clone()));
        for region in &self.regions {
            for &folder in Folder::VARIANTS {
                let n = counts.get(&(region.clone(), folder)).copied().unwrap_or(0);
                metrics::gauge!("pos_tickets", "folder" => folder.code(), "region" => region.clone()).set(n as f64);
            }
        }
        Ok(())
    }
}

/// Open tickets by (region, folder): one grouped query over the stages that are not final.
pub async fn open_tickets(db: &Db) -> Result<HashMap<(String, Folder), i64>, sqlx::Error> {
    let open: Vec<Stage> = Stage::VARIANTS.iter().copied().filter(|stage| !stage.is_final()).collect();
    let placeholders: Vec<String> = (1..=open.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT region_code, stage, COUNT(*) AS n FROM tickets WHERE stage IN ({}) GROUP BY region_code, stage",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for stage in &open {
        query = query.bind(stage.code());
    }
    let mut counts = HashMap::new();
    for row in query.fetch_all(db.pool()).await? {
        let code: String = row.try_get("stage")?;
        let stage: Stage = code.parse().map_err(|_| sqlx::Error::ColumnDecode {
            index: "stage".into(),
            source: format!("unknown stage {code:?}").into(),
        })?;
        *counts.entry((row.try_get("region_code")?, stage.folder())).or_insert(0) += row.try_get::<i64, _>("n")?;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_closes_when_its_organization_is_done_with_it() {
        let closing: Vec<Stage> = Stage::VARIANTS.iter().copied().filter(|stage| closes(*stage)).collect();
        assert_eq!(closing, [Stage::Answered, Stage::Accepted, Stage::ReviewStopped, Stage::Rejected]);
        // Every closing stage is in Processed, and a ticket handed over is not closed.
        assert!(closing.iter().all(|stage| stage.folder() == Folder::Processed));
        assert!(!closes(Stage::Redirected) && !closes(Stage::ReturnedToCoordination));
    }
}
