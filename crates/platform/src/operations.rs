//! What the APIs of `pos.v1.operations` share: every process serves them for the services it
//! runs and asks the peers of the other services for the rest, as the caller, once (a call
//! that was forwarded already is answered locally or refused, never passed on again).

use std::future::Future;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::config::PlatformConfig;
use crate::peers::{FORWARDED_HEADER, Service};

/// A channel to each service this process does not run and has peers for.
pub struct PeerServices {
    /// Sorted by service name, so that answers merge in a stable order.
    channels: Vec<(&'static str, Channel)>,
}

impl PeerServices {
    /// Channels to the services not in `hosted` that `[peers]` names endpoints for.
    pub fn new(hosted: &[&str], config: &PlatformConfig) -> anyhow::Result<PeerServices> {
        let mut channels = Vec::new();
        for service in Service::ALL.iter().copied().filter(|service| !hosted.contains(&service.name())) {
            let endpoints = config.peers.endpoints(service);
            if !endpoints.is_empty() {
                channels.push((service.name(), crate::peers::balanced(endpoints, config.peers.dns_refresh(), None)?));
            }
        }
        channels.sort_by_key(|(name, _)| *name);
        Ok(PeerServices { channels })
    }

    /// The channel to `service`'s peers, when it has any.
    pub fn get(&self, service: &str) -> Option<Channel> {
        self.channels.iter().find(|(name, _)| *name == service).map(|(_, channel)| channel.clone())
    }

    /// Asks each peer service at once with `call`; one answer per service is enough, as every
    /// replica of a service shares its store. Returns the answers and the services that did
    /// not answer (logged).
    pub async fn ask_each<R, F, Fut>(&self, what: &str, call: F) -> (Vec<R>, Vec<String>)
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<R, Status>>,
    {
        let answers = futures::future::join_all(self.channels.iter().map(|(_, channel)| call(channel.clone()))).await;
        let (mut ok, mut unreachable) = (Vec::new(), Vec::new());
        for ((service, _), answer) in self.channels.iter().zip(answers) {
            match answer {
                Ok(answer) => ok.push(answer),
                Err(status) => {
                    tracing::warn!(service, code = ?status.code(), message = status.message(), what, "peer did not answer");
                    unreachable.push((*service).to_owned());
                }
            }
        }
        (ok, unreachable)
    }
}

/// Whether `request` came from another process on its caller's behalf.
pub fn is_forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED_HEADER)
}

/// A call to a peer on the behalf of the caller of `incoming`: the caller's token, the front
/// door's loop guard and the trace context.
pub fn forwarded_request<T, U>(incoming: &Request<U>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    mark_forwarded(&mut request, incoming.metadata().get("authorization"));
    request
}

/// Marks a call made to a peer on the caller's behalf: the caller's token, and the front door's
/// loop guard.
pub fn mark_forwarded<T>(request: &mut Request<T>, token: Option<&MetadataValue<Ascii>>) {
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", token.clone());
    }
    request.metadata_mut().insert(FORWARDED_HEADER, MetadataValue::from_static("1"));
    crate::telemetry::inject_into_metadata(request.metadata_mut());
}
