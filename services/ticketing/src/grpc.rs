//! The cabinet over gRPC: the list with its folder counts, and the card.

use pos_platform::auth::{Caller, Role, authorize};
use pos_platform::db::Db;
use pos_platform::grpc::{FieldViolations, internal};
use pos_proto::v1 as pb;
use pos_proto::v1::ticketing_service_server::TicketingService;
use tonic::{Request, Response, Status};

use crate::folder::Folder;
use crate::store::{self, Cursor, ListQuery};

const DEFAULT_PAGE_SIZE: i32 = 50;
const MAX_PAGE_SIZE: i32 = 500;

/// Who may open the cabinet: its staff, and systems.
const CABINET_ROLES: [Role; 7] =
    [Role::Coordinator, Role::Executor, Role::Head, Role::Curator, Role::OrgAdmin, Role::Approver, Role::System];

pub struct Ticketing {
    db: Db,
}

impl Ticketing {
    pub fn new(db: Db) -> Ticketing {
        Ticketing { db }
    }
}

fn check_access(caller: &Caller, ticket: &store::Ticket, method: &str) -> Result<(), Status> {
    caller.require_organization(&ticket.organization_id, method)
}

#[tonic::async_trait]
impl TicketingService for Ticketing {
    async fn list_tickets(
        &self,
        request: Request<pb::ListTicketsRequest>,
    ) -> Result<Response<pb::ListTicketsResponse>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/ListTickets";
        let caller = authorize(&request, METHOD, &CABINET_ROLES)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        let organization_id = if request.organization_id.is_empty() {
            caller.organization_id.clone()
        } else {
            request.organization_id.clone()
        };
        if organization_id.is_empty() {
            violations.add("organization_id", "required for callers without an organization");
        }
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                violations.add("page_size", format!("must be between 1 and {MAX_PAGE_SIZE}"));
                DEFAULT_PAGE_SIZE
            }
        };
        let folder = match pb::Folder::try_from(request.folder) {
            Ok(folder) => Folder::from_proto(folder),
            Err(_) => {
                violations.add("folder", "unknown folder");
                None
            }
        };
        let after = if request.page_token.is_empty() {
            None
        } else {
            let cursor = Cursor::decode(&request.page_token);
            if cursor.is_none() {
                violations.add("page_token", "not a token returned by ListTickets");
            }
            cursor
        };
        let newest_first = match pb::SortOrder::try_from(request.sort) {
            Ok(pb::SortOrder::Unspecified | pb::SortOrder::ReceivedDesc) => true,
            Ok(pb::SortOrder::ReceivedAsc) => false,
            Err(_) => {
                violations.add("sort", "unknown sort order");
                true
            }
        };
        violations.into_result()?;
        caller.require_organization(&organization_id, METHOD)?;

        let query = ListQuery {
            organization_id: organization_id.clone(),
            folder,
            newest_first,
            fast_track_only: request.fast_track_only,
            delegated_only: request.delegated_only,
            after,
            limit: i64::from(page_size),
        };
        let (tickets, next) = store::list(&self.db, &query).await.map_err(|e| internal("failed to list tickets", e))?;
        let counts = store::folder_counts(&self.db, &organization_id)
            .await
            .map_err(|e| internal("failed to count tickets", e))?;
        Ok(Response::new(pb::ListTicketsResponse {
            tickets: tickets.iter().map(store::Ticket::to_proto).collect(),
            next_page_token: next.map(|c| c.encode()).unwrap_or_default(),
            folder_counts: counts
                .into_iter()
                .map(|(folder, count)| pb::FolderCount { folder: folder.to_proto() as i32, count })
                .collect(),
        }))
    }

    async fn list_staff(
        &self,
        _request: Request<pb::ListStaffRequest>,
    ) -> Result<Response<pb::ListStaffResponse>, Status> {
        Err(Status::unimplemented("the staff directory is not available yet"))
    }

    async fn upsert_staff(&self, _request: Request<pb::StaffMember>) -> Result<Response<pb::StaffMember>, Status> {
        Err(Status::unimplemented("the staff directory is not available yet"))
    }

    async fn get_ticket(&self, request: Request<pb::GetTicketRequest>) -> Result<Response<pb::Ticket>, Status> {
        const METHOD: &str = "pos.v1.TicketingService/GetTicket";
        let caller = authorize(&request, METHOD, &CABINET_ROLES)?;
        let found = match request.into_inner().key {
            Some(pb::get_ticket_request::Key::TicketId(id)) if !id.is_empty() => store::get(&self.db, &id).await,
            Some(pb::get_ticket_request::Key::AppealId(id)) if !id.is_empty() => {
                store::get_by_appeal(&self.db, &id).await
            }
            _ => return Err(pos_platform::grpc::invalid_field("key", "give ticket_id or appeal_id")),
        }
        .map_err(|e| internal("failed to read the ticket", e))?;
        let ticket = found.ok_or_else(|| Status::not_found("no such ticket"))?;
        check_access(&caller, &ticket, METHOD)?;
        Ok(Response::new(ticket.to_proto()))
    }
}
