//! The deadlines the SLA service armed, mirrored on the tickets for the list to filter and sort
//! by. The SLA service owns the clocks; these columns only follow its events.

use pos_platform::Tx;

/// Which deadline an `sla.*` event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    Answer,
    Execution,
}

/// Records a deadline the SLA service armed (or moved) on the appeal's current ticket at the
/// deadline's organization; by ticket id only when no appeal is given. The SLA service keys its
/// clocks by appeal and keeps them through a reroute, so the ticket id it knows may be the
/// superseded one. Returns the number of tickets changed (0: no such ticket yet).
pub async fn set_due(
    tx: &mut Tx,
    ticket_id: &str,
    appeal_id: &str,
    organization_id: &str,
    clock: Clock,
    due: i64,
) -> Result<u64, sqlx::Error> {
    let column = match clock {
        Clock::Answer => "answer_due",
        Clock::Execution => "execution_due",
    };
    // A newly armed answer clock is a fresh deadline: the overdue flag belongs to the old one.
    let reset = match clock {
        Clock::Answer => ", overdue = FALSE",
        Clock::Execution => "",
    };
    let sql = format!(
        "UPDATE tickets SET {column} = $1{reset} WHERE (appeal_id = $3 AND organization_id = $4 AND superseded_by = '') \
         OR ($3 = '' AND id = $2)"
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(due)
        .bind(ticket_id)
        .bind(appeal_id)
        .bind(organization_id)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// `sla.overdue` for the answer clock: the list's overdue filter. The ticket is found as in
/// [`set_due`].
pub async fn set_overdue(
    tx: &mut Tx,
    ticket_id: &str,
    appeal_id: &str,
    organization_id: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE tickets SET overdue = TRUE WHERE (appeal_id = $2 AND organization_id = $3 AND superseded_by = '') \
         OR ($2 = '' AND id = $1)",
    )
    .bind(ticket_id)
    .bind(appeal_id)
    .bind(organization_id)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}
