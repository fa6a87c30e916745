//! The database outage check every service runs: with the database gone, each method of the
//! service's API answers `UNAVAILABLE` with retry info and the reason `DATABASE_UNAVAILABLE`,
//! so that callers come back later instead of reporting a fault.

use std::future::Future;
use std::pin::Pin;

use prost::Message;
use tonic::{Code, Response, Status};
use tonic_types::StatusExt;

use super::TestServer;

/// One method called: `Ok` or the status it failed with.
pub type Call = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

/// `rpc_call!(client, method, request)`: calls `method` on a clone of the generated `client`
/// (tonic clients borrow themselves mutably, so a call that outlives the line owns its copy),
/// as a [`Call`] for an outage table.
#[macro_export]
macro_rules! rpc_call {
    ($client:expr, $method:ident, $request:expr) => {{
        let mut client = $client.clone();
        let request = $request;
        $crate::testing::call(async move { client.$method(request).await })
    }};
}

/// A client call as a [`Call`], whatever it answers.
pub fn call<T, Fut>(answer: Fut) -> Call
where
    Fut: Future<Output = Result<Response<T>, Status>> + Send + 'static,
{
    Box::pin(async move { answer.await.map(drop) })
}

/// The methods a `pos.v1` service declares (e.g. `NotifyService`), read from the contract.
pub fn declared_methods(service: &str) -> Vec<String> {
    let files = prost_types::FileDescriptorSet::decode(pos_proto::FILE_DESCRIPTOR_SET).expect("the descriptor set");
    files
        .file
        .iter()
        .filter(|file| file.package() == "pos.v1")
        .flat_map(|file| &file.service)
        .filter(|declared| declared.name() == service)
        .flat_map(|declared| declared.method.iter().map(|method| method.name().to_owned()))
        .collect()
}

/// Closes `server`'s database, then runs `calls` (method name → call with a token that has the
/// needed role and a body that passes validation) and asserts that each answers `UNAVAILABLE`
/// with retry info and the reason `DATABASE_UNAVAILABLE`. The table must name every method of
/// `service`, so a new method without a row fails here.
pub async fn assert_unavailable_without_database(server: &TestServer, service: &str, calls: Vec<(&str, Call)>) {
    let mut table: Vec<&str> = calls.iter().map(|(method, _)| *method).collect();
    let mut declared = declared_methods(service);
    assert!(!declared.is_empty(), "pos.v1 declares no service {service}");
    table.sort_unstable();
    declared.sort_unstable();
    assert_eq!(table, declared, "the outage table of {service} covers every method");
    server.db.close().await;
    for (method, call) in calls {
        let status = call.await.expect_err(method);
        assert_eq!(status.code(), Code::Unavailable, "{service}/{method}: {status:?}");
        assert_eq!(crate::error::reason(&status), "DATABASE_UNAVAILABLE", "{service}/{method}: {status:?}");
        assert!(status.get_details_retry_info().is_some(), "{service}/{method} gives no retry info: {status:?}");
    }
}
