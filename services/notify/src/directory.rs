//! Who works where: staff by role from ticketing's staff directory and an organization's own
//! address from routing, behind a trait so tests can supply them from data.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pos_platform::peers::retry_idempotent;
use pos_proto::v1 as pb;
use pos_proto::v1::routing_service_client::RoutingServiceClient;
use pos_proto::v1::ticketing_service_client::TicketingServiceClient;
use tonic::Code;
use tonic::transport::Channel;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staff {
    pub subject: String,
    pub email: String,
    pub roles: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("directory unavailable: {0}")]
pub struct DirectoryError(pub String);

#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Active staff of `organization_id` holding `role` (all staff for an empty role).
    async fn staff(&self, organization_id: &str, role: &str) -> Result<Vec<Staff>, DirectoryError>;
    /// The organization's own e-mail, empty when it has none.
    async fn organization_email(&self, organization_id: &str) -> Result<String, DirectoryError>;
}

/// The peers over gRPC, with answers kept for a short while: one appeal's life asks the same
/// questions several times, and a burst of appeals asks them thousands of times.
pub struct GrpcDirectory {
    ticketing: TicketingServiceClient<tonic::transport::Channel>,
    routing: RoutingServiceClient<tonic::transport::Channel>,
    token: String,
    staff_cache: Mutex<HashMap<StaffKey, Cached<Vec<Staff>>>>,
    email_cache: Mutex<HashMap<String, Cached<String>>>,
}

/// An answer and when it was fetched.
type Cached<T> = (Instant, T);
/// (organization, role).
type StaffKey = (String, String);

const CACHE_FOR: Duration = Duration::from_secs(30);

impl GrpcDirectory {
    /// The directory over channels to ticketing and routing (balanced over their replicas,
    /// see `ServiceContext::peer`).
    pub fn new(ticketing: Channel, routing: Channel, token: String) -> GrpcDirectory {
        GrpcDirectory {
            ticketing: TicketingServiceClient::new(ticketing),
            routing: RoutingServiceClient::new(routing),
            token,
            staff_cache: Mutex::new(HashMap::new()),
            email_cache: Mutex::new(HashMap::new()),
        }
    }
}

/// A peer that does not (yet) implement the call, or does not know the organization, answers
/// "nobody" rather than stalling every notification; anything else is worth a retry.
fn nobody(code: Code) -> bool {
    matches!(code, Code::Unimplemented | Code::NotFound)
}

#[async_trait]
impl Directory for GrpcDirectory {
    async fn staff(&self, organization_id: &str, role: &str) -> Result<Vec<Staff>, DirectoryError> {
        let key = (organization_id.to_owned(), role.to_owned());
        if let Some((at, staff)) = self.staff_cache.lock().expect("cache lock").get(&key)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(staff.clone());
        }
        // A read: tried again when the replica the balancer picked is down.
        let lookup = retry_idempotent(|| {
            let request = pb::ListStaffRequest { organization_id: organization_id.to_owned(), role: role.to_owned() };
            let (mut client, request) = (self.ticketing.clone(), pos_platform::grpc::outgoing(request, &self.token));
            async move { client.list_staff(request).await }
        });
        let staff = match lookup.await {
            Ok(response) => response
                .into_inner()
                .staff
                .into_iter()
                .filter(|member| member.active && !member.email.is_empty())
                .map(|member| Staff { subject: member.subject, email: member.email, roles: member.roles })
                .collect(),
            Err(status) if nobody(status.code()) => {
                tracing::warn!(organization_id, role, code = ?status.code(), "staff directory has no answer");
                Vec::new()
            }
            Err(status) => return Err(DirectoryError(status.message().to_owned())),
        };
        self.staff_cache.lock().expect("cache lock").insert(key, (Instant::now(), staff.clone()));
        Ok(staff)
    }

    async fn organization_email(&self, organization_id: &str) -> Result<String, DirectoryError> {
        if let Some((at, email)) = self.email_cache.lock().expect("cache lock").get(organization_id)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(email.clone());
        }
        let lookup = retry_idempotent(|| {
            let request = pb::GetOrganizationRequest { id: organization_id.to_owned() };
            let (mut client, request) = (self.routing.clone(), pos_platform::grpc::outgoing(request, &self.token));
            async move { client.get_organization(request).await }
        });
        let email = match lookup.await {
            Ok(response) => response.into_inner().email,
            Err(status) if nobody(status.code()) => {
                tracing::warn!(organization_id, code = ?status.code(), "organization directory has no answer");
                String::new()
            }
            Err(status) => return Err(DirectoryError(status.message().to_owned())),
        };
        self.email_cache
            .lock()
            .expect("cache lock")
            .insert(organization_id.to_owned(), (Instant::now(), email.clone()));
        Ok(email)
    }
}

/// A directory from data, for tests and for deployments without a staff directory.
#[derive(Default)]
pub struct StaticDirectory {
    pub staff: HashMap<String, Vec<Staff>>,
    pub emails: HashMap<String, String>,
}

#[async_trait]
impl Directory for StaticDirectory {
    async fn staff(&self, organization_id: &str, role: &str) -> Result<Vec<Staff>, DirectoryError> {
        Ok(self
            .staff
            .get(organization_id)
            .map(|staff| {
                staff
                    .iter()
                    .filter(|member| role.is_empty() || member.roles.iter().any(|r| r == role))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn organization_email(&self, organization_id: &str) -> Result<String, DirectoryError> {
        Ok(self.emails.get(organization_id).cloned().unwrap_or_default())
    }
}
