//! Dead letters as a tool (see `docs/adr/0011-dead-letters-as-a-tool.md`): the depth of every
//! consumer's dead-letter queue as a metric, and `pos.v1.operations.DeadLetterService` to list,
//! read, replay and drop dead letters, on either bus.
//!
//! Every process serves it for the consumers it runs. A call naming a queue of a service the
//! process does not run goes to that service's peers, as the front door does for the services'
//! own APIs; the queue's name says which service consumes it. Listing every queue asks each
//! peer for its own and merges the answers.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;

use pos_proto::v1::operations as pb;
use pos_proto::v1::operations::dead_letter_service_client::DeadLetterServiceClient;
use pos_proto::v1::operations::dead_letter_service_server::DeadLetterService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::auth::{Caller, Role, authorize};
use crate::bus::{Bus, DeadLetter, DeadLetterAction, DeadLetterSelection, Envelope, QueueSpec};
use crate::config::PlatformConfig;
use crate::error::{ApiError, FieldViolations};
use crate::operations::{PeerServices, forwarded_request, is_forwarded};
use crate::peers::Service;

/// Who may look at and act on dead letters: they carry citizens' events.
const ALLOWED: &[Role] = &[Role::Operator, Role::System];
/// Messages listed for one queue unless the caller asks for another number.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
/// Most messages looked through to find one by id.
const MAX_SCAN: usize = 100_000;

/// Publishes `pos_dead_letters{queue}`: the messages waiting in each consumer's dead-letter
/// queue, labelled with the consumer's queue (as `pos_consumer_lag` is). A queue that cannot be
/// read now keeps its last sample.
pub async fn observe(bus: &dyn Bus, queues: &[String]) {
    for queue in queues {
        let dead_letter_queue = QueueSpec::new(queue.clone(), &[]).dead_letter_queue();
        if let Ok(depth) = bus.queue_depth(&dead_letter_queue).await {
            metrics::gauge!("pos_dead_letters", "queue" => queue.clone()).set(depth as f64);
        }
    }
}

/// The dead-letter API of one process.
pub struct DeadLetterApi {
    bus: Arc<dyn Bus>,
    /// The consumers this process runs, by their queue's name on the bus.
    local: BTreeMap<String, QueueSpec>,
    /// What every queue name of this deployment starts with (`<exchange>.[<deployment>.]`).
    queue_prefix: String,
    hosted: Vec<String>,
    /// Channels to the services this process does not run and has peers for.
    peers: PeerServices,
}

impl DeadLetterApi {
    /// The API for the consumers `specs` (named as on the bus) of the services `hosted`.
    pub fn new(
        bus: Arc<dyn Bus>,
        specs: Vec<QueueSpec>,
        hosted: &[&str],
        config: &PlatformConfig,
    ) -> anyhow::Result<DeadLetterApi> {
        let peers = PeerServices::new(hosted, config)?;
        Ok(DeadLetterApi {
            bus,
            local: specs.into_iter().map(|spec| (spec.name.clone(), spec)).collect(),
            queue_prefix: config.queue_name(""),
            hosted: hosted.iter().map(|name| (*name).to_owned()).collect(),
            peers,
        })
    }

    /// Where the consumer queue `queue` is served: here, or by a peer. Accepts the name on the
    /// bus, the consumer's short name (`routing.appeal-received`) and the dead-letter queue's.
    fn locate(&self, queue: &str) -> Result<Place<'_>, ApiError> {
        let queue = queue.strip_suffix(".dead").unwrap_or(queue);
        let full = if queue.starts_with(&self.queue_prefix) { queue.to_owned() } else { self.queue_name(queue) };
        if let Some(spec) = self.local.get(&full) {
            return Ok(Place::Here(spec));
        }
        let consumer = full.strip_prefix(&self.queue_prefix).unwrap_or(&full);
        let service = consumer.split('.').next().unwrap_or_default();
        if self.hosted.iter().any(|hosted| hosted == service) {
            return Err(ApiError::not_found(format!("{service} has no consumer queue {full}")));
        }
        match self.peers.get(service) {
            Some(channel) => Ok(Place::Peer(channel)),
            None if Service::ALL.iter().any(|known| known.name() == service) => Err(ApiError::not_found(format!(
                "{full} belongs to {service}, which this process does not run and has no peers for"
            ))),
            None => Err(ApiError::not_found(format!("no consumer queue {full}"))),
        }
    }

    fn queue_name(&self, consumer: &str) -> String {
        format!("{}{consumer}", self.queue_prefix)
    }

    fn service_of(&self, queue: &str) -> String {
        let consumer = queue.strip_prefix(&self.queue_prefix).unwrap_or(queue);
        consumer.split('.').next().unwrap_or_default().to_owned()
    }

    async fn summary_of_queue(&self, spec: &QueueSpec) -> Result<pb::DeadLetterQueue, ApiError> {
        let dead_letter_queue = spec.dead_letter_queue();
        let depth = self.bus.queue_depth(&dead_letter_queue).await.map_err(bus_error)?;
        let oldest = if depth > 0 {
            self.bus.peek_dead_letters(spec, 1).await.map_err(bus_error)?.first().and_then(|d| d.dead_lettered_at)
        } else {
            None
        };
        Ok(pb::DeadLetterQueue {
            queue: spec.name.clone(),
            dead_letter_queue,
            service: self.service_of(&spec.name),
            depth,
            oldest: oldest.map(pos_proto::time::to_proto),
        })
    }

    /// The dead letters of `spec` with message id `id` (usually one; copies after a crash).
    async fn find(&self, spec: &QueueSpec, id: Uuid) -> Result<Vec<DeadLetter>, ApiError> {
        let letters = self.bus.peek_dead_letters(spec, MAX_SCAN).await.map_err(bus_error)?;
        let found: Vec<DeadLetter> = letters.into_iter().filter(|letter| letter.envelope.message_id == id).collect();
        if found.is_empty() {
            return Err(ApiError::not_found(format!("no dead letter {id} in {}", spec.dead_letter_queue())));
        }
        Ok(found)
    }

    /// Asks each peer service for its own queues; every replica of a service runs the same
    /// consumers on the same queues.
    async fn list_peers<T>(&self, incoming: &Request<T>) -> (Vec<pb::DeadLetterQueue>, Vec<String>) {
        let (answers, unreachable) = self
            .peers
            .ask_each("ListDeadLetters", |channel| {
                let request =
                    forwarded_request(incoming, pb::ListDeadLettersRequest { local_only: true, ..Default::default() });
                async move { DeadLetterServiceClient::new(channel).list_dead_letters(request).await }
            })
            .await;
        (answers.into_iter().flat_map(|answer| answer.into_inner().queues).collect(), unreachable)
    }
}

enum Place<'a> {
    Here(&'a QueueSpec),
    Peer(Channel),
}

/// Sends `message` to the peer that runs the queue, as the caller; refuses to pass on a call
/// that was forwarded already (peers configured in a loop).
async fn to_peer<T, R, F, Fut>(request: &Request<T>, message: T, channel: Channel, call: F) -> Result<R, Status>
where
    F: FnOnce(DeadLetterServiceClient<Channel>, Request<T>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<R>, Status>>,
{
    if is_forwarded(request) {
        return Err(ApiError::internal(
            "peers configured in a loop",
            anyhow::anyhow!("a forwarded dead-letter call reached a process that does not run its queue"),
        )
        .into());
    }
    call(DeadLetterServiceClient::new(channel), forwarded_request(request, message)).await.map(Response::into_inner)
}

fn bus_error(error: crate::bus::BusError) -> ApiError {
    ApiError::unavailable("BUS_UNAVAILABLE", format!("the bus did not answer: {error}"))
}

fn required_queue(queue: &str, violations: &mut FieldViolations) {
    if queue.trim().is_empty() {
        violations.add("queue", "required: a consumer queue, as `pos dlq list` shows it");
    }
}

fn message_id(value: &str, violations: &mut FieldViolations) -> Option<Uuid> {
    match Uuid::from_str(value.trim()) {
        Ok(id) => Some(id),
        Err(_) if value.trim().is_empty() => {
            violations.add("message_id", "required");
            None
        }
        Err(_) => {
            violations.add("message_id", "not a message id (a UUID)");
            None
        }
    }
}

fn summary(letter: &DeadLetter) -> pb::DeadLetterSummary {
    let envelope = &letter.envelope;
    pb::DeadLetterSummary {
        message_id: envelope.message_id.to_string(),
        type_name: envelope.type_name.clone(),
        routing_key: envelope.routing_key.clone(),
        reason: envelope.death_reason().unwrap_or("unknown").to_owned(),
        dead_lettered_at: letter.dead_lettered_at.map(pos_proto::time::to_proto),
        delivery_count: letter.attempts,
        size: envelope.payload.len() as u64,
        appeal_id: envelope.appeal_id().unwrap_or_default().to_owned(),
        published_at: Some(pos_proto::time::to_proto(envelope.timestamp)),
    }
}

fn ids(envelopes: &[Envelope]) -> Vec<String> {
    let unique: BTreeSet<String> = envelopes.iter().map(|envelope| envelope.message_id.to_string()).collect();
    unique.into_iter().collect()
}

#[tonic::async_trait]
impl DeadLetterService for DeadLetterApi {
    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        authorize(&request, "ListDeadLetters", ALLOWED)?;
        let body = request.get_ref().clone();
        let limit = match body.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        } as usize;
        if !body.queue.trim().is_empty() {
            let spec = match self.locate(&body.queue)? {
                Place::Here(spec) => spec,
                Place::Peer(channel) => {
                    let answer = to_peer(&request, body, channel, |mut client, outgoing| async move {
                        client.list_dead_letters(outgoing).await
                    })
                    .await?;
                    return Ok(Response::new(answer));
                }
            };
            let queue = self.summary_of_queue(spec).await?;
            let letters = self.bus.peek_dead_letters(spec, limit).await.map_err(bus_error)?;
            return Ok(Response::new(pb::ListDeadLettersResponse {
                queues: vec![queue],
                messages: letters.iter().map(summary).collect(),
                unreachable: Vec::new(),
            }));
        }
        let mut queues = BTreeMap::new();
        for spec in self.local.values() {
            queues.insert(spec.name.clone(), self.summary_of_queue(spec).await?);
        }
        let mut unreachable = Vec::new();
        if !body.local_only && !is_forwarded(&request) {
            let (peer_queues, peers_unreachable) = self.list_peers(&request).await;
            for queue in peer_queues {
                queues.entry(queue.queue.clone()).or_insert(queue);
            }
            unreachable = peers_unreachable;
        }
        Ok(Response::new(pb::ListDeadLettersResponse {
            queues: queues.into_values().collect(),
            messages: Vec::new(),
            unreachable,
        }))
    }

    async fn get_dead_letter(
        &self,
        request: Request<pb::GetDeadLetterRequest>,
    ) -> Result<Response<pb::DeadLetter>, Status> {
        authorize(&request, "GetDeadLetter", ALLOWED)?;
        let body = request.get_ref().clone();
        let mut violations = FieldViolations::new();
        required_queue(&body.queue, &mut violations);
        let id = message_id(&body.message_id, &mut violations);
        violations.into_result()?;
        let id = id.expect("validated");
        let spec = match self.locate(&body.queue)? {
            Place::Here(spec) => spec,
            Place::Peer(channel) => {
                let answer = to_peer(&request, body, channel, |mut client, outgoing| async move {
                    client.get_dead_letter(outgoing).await
                })
                .await?;
                return Ok(Response::new(answer));
            }
        };
        let letter = self.find(spec, id).await?.remove(0);
        let envelope = &letter.envelope;
        Ok(Response::new(pb::DeadLetter {
            queue: spec.name.clone(),
            summary: Some(summary(&letter)),
            headers: envelope.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            payload_json: payload::to_json(&envelope.type_name, &envelope.payload),
        }))
    }

    async fn replay_dead_letter(
        &self,
        request: Request<pb::ReplayDeadLetterRequest>,
    ) -> Result<Response<pb::ReplayDeadLetterResponse>, Status> {
        let caller = authorize(&request, "ReplayDeadLetter", ALLOWED)?;
        let body = request.get_ref().clone();
        let mut violations = FieldViolations::new();
        required_queue(&body.queue, &mut violations);
        let selection = match (body.all, body.message_id.trim().is_empty()) {
            (true, true) => Some(DeadLetterSelection::All),
            (true, false) => {
                violations.add("message_id", "give a message id or `all`, not both");
                None
            }
            (false, _) => message_id(&body.message_id, &mut violations).map(DeadLetterSelection::Message),
        };
        violations.into_result()?;
        let selection = selection.expect("validated");
        let spec = match self.locate(&body.queue)? {
            Place::Here(spec) => spec,
            Place::Peer(channel) => {
                let answer = to_peer(&request, body, channel, |mut client, outgoing| async move {
                    client.replay_dead_letter(outgoing).await
                })
                .await?;
                return Ok(Response::new(answer));
            }
        };
        let replayed =
            self.bus.settle_dead_letters(spec, selection, DeadLetterAction::Replay).await.map_err(bus_error)?;
        if replayed.is_empty()
            && let DeadLetterSelection::Message(id) = selection
        {
            return Err(ApiError::not_found(format!("no dead letter {id} in {}", spec.dead_letter_queue())).into());
        }
        let message_ids = ids(&replayed);
        tracing::info!(
            queue = %spec.name,
            subject = %caller.subject,
            count = message_ids.len(),
            message_ids = ?message_ids,
            "dead letters replayed"
        );
        Ok(Response::new(pb::ReplayDeadLetterResponse { message_ids }))
    }

    async fn drop_dead_letter(
        &self,
        request: Request<pb::DropDeadLetterRequest>,
    ) -> Result<Response<pb::DropDeadLetterResponse>, Status> {
        let caller = authorize(&request, "DropDeadLetter", ALLOWED)?;
        let body = request.get_ref().clone();
        let mut violations = FieldViolations::new();
        required_queue(&body.queue, &mut violations);
        let id = message_id(&body.message_id, &mut violations);
        violations.into_result()?;
        let id = id.expect("validated");
        let spec = match self.locate(&body.queue)? {
            Place::Here(spec) => spec,
            Place::Peer(channel) => {
                let answer = to_peer(&request, body, channel, |mut client, outgoing| async move {
                    client.drop_dead_letter(outgoing).await
                })
                .await?;
                return Ok(Response::new(answer));
            }
        };
        let dropped = self
            .bus
            .settle_dead_letters(spec, DeadLetterSelection::Message(id), DeadLetterAction::Drop)
            .await
            .map_err(bus_error)?;
        let Some(first) = dropped.first() else {
            return Err(ApiError::not_found(format!("no dead letter {id} in {}", spec.dead_letter_queue())).into());
        };
        log_drop(&caller, spec, first, dropped.len());
        Ok(Response::new(pb::DropDeadLetterResponse { message_ids: ids(&dropped) }))
    }
}

/// A dropped event is gone for good: who did it and why it had died stay in the log. The
/// payload does not (the headers and the reason carry no personal data).
fn log_drop(caller: &Caller, spec: &QueueSpec, envelope: &Envelope, copies: usize) {
    tracing::warn!(
        queue = %spec.name,
        subject = %caller.subject,
        message_id = %envelope.message_id,
        event = %envelope.routing_key,
        type_name = %envelope.type_name,
        appeal_id = envelope.appeal_id().unwrap_or_default(),
        reason = envelope.death_reason().unwrap_or("unknown"),
        copies,
        "dead letter dropped"
    );
}

/// Payloads as JSON, decoded by their protobuf type from the contract's descriptors, so any
/// event of `pos.v1.events` reads without code per event.
pub mod payload {
    use std::collections::HashMap;
    use std::sync::OnceLock;

    use prost::Message as _;
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};
    use serde_json::{Map, Value, json};

    struct Index {
        messages: HashMap<String, DescriptorProto>,
        enums: HashMap<String, EnumDescriptorProto>,
    }

    fn index() -> &'static Index {
        static INDEX: OnceLock<Index> = OnceLock::new();
        INDEX.get_or_init(|| {
            let set = FileDescriptorSet::decode(pos_proto::FILE_DESCRIPTOR_SET).unwrap_or_default();
            let mut index = Index { messages: HashMap::new(), enums: HashMap::new() };
            for file in &set.file {
                let scope = if file.package().is_empty() { String::new() } else { format!(".{}", file.package()) };
                for message in &file.message_type {
                    add_message(&mut index, &scope, message);
                }
                for enumeration in &file.enum_type {
                    index.enums.insert(format!("{scope}.{}", enumeration.name()), enumeration.clone());
                }
            }
            index
        })
    }

    fn add_message(index: &mut Index, scope: &str, message: &DescriptorProto) {
        let name = format!("{scope}.{}", message.name());
        for nested in &message.nested_type {
            add_message(index, &name, nested);
        }
        for enumeration in &message.enum_type {
            index.enums.insert(format!("{name}.{}", enumeration.name()), enumeration.clone());
        }
        index.messages.insert(name, message.clone());
    }

    /// The payload of a `type_name` (e.g. `pos.v1.events.AppealReceived`) as pretty JSON with
    /// the contract's field names; what cannot be decoded says why, with the bytes in base64.
    pub fn to_json(type_name: &str, payload: &[u8]) -> String {
        let value = match index().messages.get(&format!(".{type_name}")) {
            Some(descriptor) => match message(descriptor, payload, 0) {
                Ok(value) => value,
                Err(problem) => json!({"undecodable": problem, "base64": base64(payload)}),
            },
            None => json!({"undecodable": format!("unknown type {type_name:?}"), "base64": base64(payload)}),
        };
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }

    /// Messages nest this deep at most before the payload is called malformed.
    const MAX_DEPTH: usize = 32;

    fn message(descriptor: &DescriptorProto, mut buf: &[u8], depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err("nested too deep".to_owned());
        }
        if descriptor.options.as_ref().is_some_and(|o| o.map_entry()) {
            return Err("a map entry outside a map".to_owned());
        }
        let mut object = Map::new();
        while !buf.is_empty() {
            let key = varint(&mut buf)?;
            let (number, wire) = ((key >> 3) as i32, (key & 7) as u8);
            let raw = raw_value(&mut buf, wire)?;
            let Some(field) = descriptor.field.iter().find(|f| f.number() == number) else {
                // An unknown field: a newer contract than this process knows.
                continue;
            };
            let repeated = field.label() == Label::Repeated;
            // A map entry: a repeated message with `key` and `value` fields.
            if let (Raw::Bytes(bytes), Type::Message) = (&raw, field.r#type())
                && let Some(entry) = index().messages.get(field.type_name())
                && entry.options.as_ref().is_some_and(|o| o.map_entry())
            {
                let (key, value) = map_entry(entry, bytes, depth)?;
                let map = object.entry(field.name().to_owned()).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(key, value);
                }
                continue;
            }
            let values = match raw {
                // Packed repeated scalars: several values in one length-delimited field.
                Raw::Bytes(bytes) if repeated && is_packable(field.r#type()) => packed(field.r#type(), field, bytes)?,
                raw => vec![scalar(field, raw, depth)?],
            };
            if repeated {
                let list = object.entry(field.name().to_owned()).or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = list {
                    list.extend(values);
                }
            } else if let Some(value) = values.into_iter().last() {
                object.insert(field.name().to_owned(), value);
            }
        }
        Ok(Value::Object(object))
    }

    fn map_entry(entry: &DescriptorProto, bytes: &[u8], depth: usize) -> Result<(String, Value), String> {
        let Value::Object(mut decoded) = message_fields(entry, bytes, depth + 1)? else {
            return Err("a map entry that is not a message".to_owned());
        };
        let key = match decoded.remove("key") {
            Some(Value::String(key)) => key,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        Ok((key, decoded.remove("value").unwrap_or(Value::Null)))
    }

    /// A map entry's fields (the entry itself is not a message on its own).
    fn message_fields(entry: &DescriptorProto, bytes: &[u8], depth: usize) -> Result<Value, String> {
        let mut plain = entry.clone();
        plain.options = None;
        message(&plain, bytes, depth)
    }

    enum Raw<'a> {
        Varint(u64),
        Fixed64(u64),
        Fixed32(u32),
        Bytes(&'a [u8]),
    }

    fn varint(buf: &mut &[u8]) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = buf.split_first().ok_or("truncated varint")?;
            *buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".to_owned())
    }

    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if buf.len() < n {
            return Err("truncated field".to_owned());
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Ok(head)
    }

    fn raw_value<'a>(buf: &mut &'a [u8], wire: u8) -> Result<Raw<'a>, String> {
        match wire {
            0 => Ok(Raw::Varint(varint(buf)?)),
            1 => Ok(Raw::Fixed64(u64::from_le_bytes(take(buf, 8)?.try_into().map_err(|_| "fixed64")?))),
            2 => {
                let len = usize::try_from(varint(buf)?).map_err(|_| "length")?;
                Ok(Raw::Bytes(take(buf, len)?))
            }
            5 => Ok(Raw::Fixed32(u32::from_le_bytes(take(buf, 4)?.try_into().map_err(|_| "fixed32")?))),
            other => Err(format!("unsupported wire type {other}")),
        }
    }

    fn is_packable(kind: Type) -> bool {
        !matches!(kind, Type::String | Type::Bytes | Type::Message | Type::Group)
    }

    fn packed(kind: Type, field: &prost_types::FieldDescriptorProto, mut bytes: &[u8]) -> Result<Vec<Value>, String> {
        let mut values = Vec::new();
        while !bytes.is_empty() {
            let raw = match kind {
                Type::Double | Type::Fixed64 | Type::Sfixed64 => raw_value(&mut bytes, 1)?,
                Type::Float | Type::Fixed32 | Type::Sfixed32 => raw_value(&mut bytes, 5)?,
                _ => raw_value(&mut bytes, 0)?,
            };
            values.push(scalar(field, raw, 0)?);
        }
        Ok(values)
    }

    fn scalar(field: &prost_types::FieldDescriptorProto, raw: Raw<'_>, depth: usize) -> Result<Value, String> {
        let wrong = || format!("field {} has the wrong wire type", field.name());
        // proto3 JSON: 64-bit integers as strings (JSON numbers lose precision beyond 2^53).
        Ok(match (field.r#type(), raw) {
            (Type::Double, Raw::Fixed64(v)) => json!(f64::from_bits(v)),
            (Type::Float, Raw::Fixed32(v)) => json!(f32::from_bits(v)),
            (Type::Int64, Raw::Varint(v)) => json!((v as i64).to_string()),
            (Type::Uint64, Raw::Varint(v)) => json!(v.to_string()),
            (Type::Int32, Raw::Varint(v)) => json!(v as i32),
            (Type::Uint32, Raw::Varint(v)) => json!(v as u32),
            (Type::Sint32, Raw::Varint(v)) => json!(((v >> 1) as i32) ^ -((v & 1) as i32)),
            (Type::Sint64, Raw::Varint(v)) => json!((((v >> 1) as i64) ^ -((v & 1) as i64)).to_string()),
            (Type::Fixed64, Raw::Fixed64(v)) => json!(v.to_string()),
            (Type::Sfixed64, Raw::Fixed64(v)) => json!((v as i64).to_string()),
            (Type::Fixed32, Raw::Fixed32(v)) => json!(v),
            (Type::Sfixed32, Raw::Fixed32(v)) => json!(v as i32),
            (Type::Bool, Raw::Varint(v)) => json!(v != 0),
            (Type::Enum, Raw::Varint(v)) => {
                let number = v as i32;
                let name = index().enums.get(field.type_name()).and_then(|enumeration| {
                    enumeration.value.iter().find(|value| value.number() == number).map(|value| value.name().to_owned())
                });
                name.map_or_else(|| json!(number), Value::String)
            }
            (Type::String, Raw::Bytes(bytes)) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
            (Type::Bytes, Raw::Bytes(bytes)) => Value::String(base64(bytes)),
            (Type::Message, Raw::Bytes(bytes)) if field.type_name() == ".google.protobuf.Timestamp" => {
                timestamp(bytes)?
            }
            (Type::Message, Raw::Bytes(bytes)) => {
                let nested =
                    index().messages.get(field.type_name()).ok_or_else(|| format!("unknown {}", field.type_name()))?;
                message(nested, bytes, depth + 1)?
            }
            _ => return Err(wrong()),
        })
    }

    /// RFC 3339 in UTC, as proto3 JSON writes a `google.protobuf.Timestamp`.
    fn timestamp(mut bytes: &[u8]) -> Result<Value, String> {
        let (mut seconds, mut nanos) = (0i64, 0i32);
        while !bytes.is_empty() {
            let key = varint(&mut bytes)?;
            match (key >> 3, raw_value(&mut bytes, (key & 7) as u8)?) {
                (1, Raw::Varint(v)) => seconds = v as i64,
                (2, Raw::Varint(v)) => nanos = v as i32,
                _ => {}
            }
        }
        let at =
            pos_proto::time::from_proto(&prost_types::Timestamp { seconds, nanos }).ok_or("timestamp out of range")?;
        Ok(Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)))
    }

    fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use pos_proto::v1::events::AppealReceived;

        #[test]
        fn an_event_reads_as_json_with_the_contracts_names() {
            let event = AppealReceived {
                appeal_id: "a-1".to_owned(),
                region_code: "41".to_owned(),
                registered_at: Some(prost_types::Timestamp { seconds: 1_737_000_000, nanos: 0 }),
                ..Default::default()
            };
            let text = to_json("pos.v1.events.AppealReceived", &event.encode_to_vec());
            let value: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["appeal_id"], "a-1", "{text}");
            assert_eq!(value["region_code"], "41", "{text}");
            assert_eq!(value["registered_at"], "2025-01-16T04:00:00Z", "{text}");
        }

        #[test]
        fn what_does_not_decode_says_why() {
            let text = to_json("pos.v1.events.Nothing", b"\x01\x02");
            assert!(text.contains("unknown type") && text.contains("AQI="), "{text}");
            let text = to_json("pos.v1.events.AppealReceived", b"\x0a\x05ab");
            assert!(text.contains("truncated"), "{text}");
        }

        #[test]
        fn base64_pads() {
            assert_eq!(base64(b""), "");
            assert_eq!(base64(b"f"), "Zg==");
            assert_eq!(base64(b"fo"), "Zm8=");
            assert_eq!(base64(b"foo"), "Zm9v");
        }
    }
}
