//! Attachments: streamed into an object store (a local folder by default, S3-compatible by
//! configuration), their type told by content, never by name, against DOMAIN.md's list.
//!
//! The first [`SNIFF_BYTES`] are held back until the type is known; after that every chunk goes
//! straight to the store. Which types a caller may upload is configuration: DOMAIN.md's list for
//! citizens, plus screenshots (PNG) for staff. Two families cannot be told apart by their first bytes: OLE2
//! compound files (.doc .xls .ppt keep their directory anywhere in the file) and ZIP archives
//! whose first entries do not say which office format they are. Those are kept in memory
//! (bounded by the size limit) and told apart once complete.

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Utc};
use futures::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use pos_platform::error::{ApiError, FieldViolations};
use pos_proto::v1::UploadAttachmentRequest;
use pos_proto::v1::upload_attachment_request::Part;
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::config::{IntakeConfig, local_folder};
use crate::error::IntakeError;

/// How much of the beginning of a file is looked at before the type is decided.
pub const SNIFF_BYTES: usize = 64 * 1024;
/// The longest file name kept, in characters.
pub const MAX_FILE_NAME_CHARS: usize = 255;
/// Parts written to a local folder: small, the file grows as chunks arrive.
const LOCAL_PART_BYTES: usize = 256 * 1024;
/// S3 refuses multipart parts below 5 MiB (except the last).
const S3_PART_BYTES: usize = 5 * 1024 * 1024;

/// How much of a file one download message carries.
pub const DOWNLOAD_CHUNK_BYTES: usize = 64 * 1024;

/// The types told by content: DOMAIN.md's list for citizens, and PNG for staff's screenshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Txt,
    Odt,
    Ods,
    Odp,
    Odf,
    Xls,
    Xlsx,
    Ppt,
    Pptx,
    Doc,
    Docx,
    Rtf,
    Pdf,
    Jpeg,
    Png,
}

impl FileKind {
    /// DOMAIN.md's list: what citizens may attach.
    pub const CITIZEN: [FileKind; 14] = [
        FileKind::Txt,
        FileKind::Odt,
        FileKind::Ods,
        FileKind::Odp,
        FileKind::Odf,
        FileKind::Xls,
        FileKind::Xlsx,
        FileKind::Ppt,
        FileKind::Pptx,
        FileKind::Doc,
        FileKind::Docx,
        FileKind::Rtf,
        FileKind::Pdf,
        FileKind::Jpeg,
    ];

    /// The citizens' list and screenshots (PNG): what staff attach to answers and incidents.
    pub const STAFF: [FileKind; 15] = {
        let mut kinds = [FileKind::Png; 15];
        let mut i = 0;
        while i < Self::CITIZEN.len() {
            kinds[i] = Self::CITIZEN[i];
            i += 1;
        }
        kinds
    };

    /// The usual extension, as people know the type.
    pub fn extension(self) -> &'static str {
        match self {
            FileKind::Txt => "txt",
            FileKind::Odt => "odt",
            FileKind::Ods => "ods",
            FileKind::Odp => "odp",
            FileKind::Odf => "odf",
            FileKind::Xls => "xls",
            FileKind::Xlsx => "xlsx",
            FileKind::Ppt => "ppt",
            FileKind::Pptx => "pptx",
            FileKind::Doc => "doc",
            FileKind::Docx => "docx",
            FileKind::Rtf => "rtf",
            FileKind::Pdf => "pdf",
            FileKind::Jpeg => "jpeg",
            FileKind::Png => "png",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            FileKind::Txt => "text/plain; charset=utf-8",
            FileKind::Odt => "application/vnd.oasis.opendocument.text",
            FileKind::Ods => "application/vnd.oasis.opendocument.spreadsheet",
            FileKind::Odp => "application/vnd.oasis.opendocument.presentation",
            FileKind::Odf => "application/vnd.oasis.opendocument.formula",
            FileKind::Xls => "application/vnd.ms-excel",
            FileKind::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            FileKind::Ppt => "application/vnd.ms-powerpoint",
            FileKind::Pptx => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            FileKind::Doc => "application/msword",
            FileKind::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            FileKind::Rtf => "application/rtf",
            FileKind::Pdf => "application/pdf",
            FileKind::Jpeg => "image/jpeg",
            FileKind::Png => "image/png",
        }
    }
}

/// What the bytes seen so far say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detection {
    Allowed(FileKind),
    /// Not an allowed type; the text says what it is.
    Refused(String),
    /// A container whose kind is only known once the whole file is seen.
    NeedsWholeFile,
}

const OLE2_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// Decides the type of a file from its first bytes (`complete`: they are the whole file).
pub fn detect(bytes: &[u8], complete: bool) -> Detection {
    if infer::archive::is_pdf(bytes) {
        return Detection::Allowed(FileKind::Pdf);
    }
    if infer::image::is_jpeg(bytes) {
        return Detection::Allowed(FileKind::Jpeg);
    }
    if infer::image::is_png(bytes) {
        return Detection::Allowed(FileKind::Png);
    }
    if infer::archive::is_rtf(bytes) {
        return Detection::Allowed(FileKind::Rtf);
    }
    if bytes.starts_with(ZIP_MAGIC) {
        return detect_zip(bytes, complete);
    }
    if bytes.starts_with(OLE2_MAGIC) {
        return detect_ole2(bytes, complete);
    }
    if let Some(kind) = infer::get(bytes) {
        return Detection::Refused(format!("{} (.{})", kind.mime_type(), kind.extension()));
    }
    if looks_like_utf8_text(bytes, complete) {
        return Detection::Allowed(FileKind::Txt);
    }
    Detection::Refused("binary data of an unknown type".into())
}

fn detect_zip(bytes: &[u8], complete: bool) -> Detection {
    if let Some(kind) = opendocument_kind(bytes) {
        return Detection::Allowed(kind);
    }
    if infer::doc::is_docx(bytes) {
        return Detection::Allowed(FileKind::Docx);
    }
    if infer::doc::is_xlsx(bytes) {
        return Detection::Allowed(FileKind::Xlsx);
    }
    if infer::doc::is_pptx(bytes) {
        return Detection::Allowed(FileKind::Pptx);
    }
    if !complete {
        return Detection::NeedsWholeFile;
    }
    // Entry names are stored uncompressed in the local headers and the central directory.
    if contains(bytes, b"[Content_Types].xml") {
        for (marker, kind) in [
            (&b"word/document.xml"[..], FileKind::Docx),
            (b"xl/workbook.xml", FileKind::Xlsx),
            (b"ppt/presentation.xml", FileKind::Pptx),
        ] {
            if contains(bytes, marker) {
                return Detection::Allowed(kind);
            }
        }
    }
    let what = infer::get(bytes).map_or_else(|| "application/zip".to_owned(), |kind| kind.mime_type().to_owned());
    Detection::Refused(format!("a ZIP archive ({what}) that is not an office document"))
}

/// OpenDocument puts an uncompressed `mimetype` entry first: its content names the kind.
fn opendocument_kind(bytes: &[u8]) -> Option<FileKind> {
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let method = u16_at(8)?;
    let size = u32_at(18)?;
    let name_len = u16_at(26)?;
    let extra_len = u16_at(28)?;
    if method != 0 || bytes.get(30..30 + name_len)? != b"mimetype" {
        return None;
    }
    let start = 30 + name_len + extra_len;
    match bytes.get(start..start + size)? {
        b"application/vnd.oasis.opendocument.text" => Some(FileKind::Odt),
        b"application/vnd.oasis.opendocument.spreadsheet" => Some(FileKind::Ods),
        b"application/vnd.oasis.opendocument.presentation" => Some(FileKind::Odp),
        b"application/vnd.oasis.opendocument.formula" => Some(FileKind::Odf),
        _ => None,
    }
}

fn detect_ole2(bytes: &[u8], complete: bool) -> Detection {
    if !complete {
        return Detection::NeedsWholeFile;
    }
    // The root entry's class id, as the writers of these formats set it.
    if infer::doc::is_doc(bytes) {
        return Detection::Allowed(FileKind::Doc);
    }
    if infer::doc::is_xls(bytes) {
        return Detection::Allowed(FileKind::Xls);
    }
    if infer::doc::is_ppt(bytes) {
        return Detection::Allowed(FileKind::Ppt);
    }
    // Some writers leave the class id empty; the main stream's name (UTF-16 in the
    // directory) still says what the document is.
    for (name, kind) in
        [("WordDocument", FileKind::Doc), ("Workbook", FileKind::Xls), ("PowerPoint Document", FileKind::Ppt)]
    {
        let utf16: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
        if contains(bytes, &utf16) {
            return Detection::Allowed(kind);
        }
    }
    Detection::Refused("an OLE2 compound file that is not a Word, Excel or PowerPoint document".into())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

fn looks_like_utf8_text(bytes: &[u8], complete: bool) -> bool {
    let mut check = Utf8Check::default();
    check.feed(bytes) && (!complete || check.finish())
}

/// Validates UTF-8 across chunk boundaries; NUL bytes mean binary data.
#[derive(Debug, Default)]
pub struct Utf8Check {
    /// The start of a character cut by the end of the previous chunk (at most 3 bytes).
    pending: Vec<u8>,
}

impl Utf8Check {
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        let joined;
        let bytes = if self.pending.is_empty() {
            bytes
        } else {
            joined = [self.pending.as_slice(), bytes].concat();
            joined.as_slice()
        };
        if bytes.contains(&0) {
            return false;
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => {
                self.pending.clear();
                true
            }
            Err(error) if error.error_len().is_none() => {
                self.pending = bytes[error.valid_up_to()..].to_vec();
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the text ended on a whole character.
    pub fn finish(&self) -> bool {
        self.pending.is_empty()
    }
}

/// The object store attachments go to.
#[derive(Clone)]
pub struct AttachmentStorage {
    store: Arc<dyn ObjectStore>,
    part_bytes: usize,
}

impl AttachmentStorage {
    pub fn new(store: Arc<dyn ObjectStore>, part_bytes: usize) -> AttachmentStorage {
        AttachmentStorage { store, part_bytes: part_bytes.max(1) }
    }

    /// Opens what `config` says: a local folder (created when missing) or an S3 bucket.
    pub fn open(config: &IntakeConfig, data_dir: &FsPath) -> anyhow::Result<AttachmentStorage> {
        let location = config.attachment_location(data_dir);
        if let Some(folder) = local_folder(&location) {
            std::fs::create_dir_all(&folder)
                .map_err(|e| anyhow::anyhow!("failed to create the attachment folder {}: {e}", folder.display()))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(&folder)?.with_automatic_cleanup(true);
            tracing::info!(folder = %folder.display(), "attachments stored in a local folder");
            return Ok(AttachmentStorage::new(Arc::new(store), LOCAL_PART_BYTES));
        }
        let rest = location.split_once("://").map_or(location.as_str(), |(_, rest)| rest);
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let s3 = &config.s3;
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(s3.allow_http)
            .with_virtual_hosted_style_request(!s3.path_style);
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &s3.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &s3.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose());
        }
        let store = builder.build()?;
        tracing::info!(%bucket, %prefix, "attachments stored in an S3 bucket");
        let store: Arc<dyn ObjectStore> = if prefix.trim_matches('/').is_empty() {
            Arc::new(store)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(store, prefix.trim_matches('/')))
        };
        Ok(AttachmentStorage::new(store, S3_PART_BYTES))
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Deletes an object; one already gone is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), object_store::Error> {
        match self.store.delete(&Path::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Whether `kind` is among the types the caller may upload, or the refusal saying what is.
fn admit(kind: FileKind, allowed: &[FileKind]) -> Result<FileKind, IntakeError> {
    if allowed.contains(&kind) {
        Ok(kind)
    } else {
        Err(refused(&format!("{} (.{})", kind.content_type(), kind.extension()), allowed))
    }
}

/// A file received and stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub id: String,
    pub file_name: String,
    pub kind: FileKind,
    pub size: u64,
    pub sha256: String,
    pub object_path: String,
}

/// Where a file's bytes are while it arrives.
enum Stage {
    /// The beginning, until the type is known.
    Sniffing(Vec<u8>),
    /// A container that is only told apart when complete.
    Buffering(Vec<u8>),
    /// Known and allowed: chunks go to the store as they come.
    Streaming { kind: FileKind, text: Option<Utf8Check> },
}

/// Receives one upload (metadata first, then chunks) and stores it; refuses types not in
/// `allowed`, sizes over the limit and streams that disagree with their declared size.
pub async fn receive<S>(
    storage: &AttachmentStorage,
    max_bytes: u64,
    allowed: &[FileKind],
    mut parts: S,
) -> Result<Received, IntakeError>
where
    S: Stream<Item = Result<UploadAttachmentRequest, Status>> + Unpin + Send,
{
    let meta = match parts.next().await {
        Some(Ok(UploadAttachmentRequest { part: Some(Part::Meta(meta)) })) => meta,
        Some(Ok(_)) | None => {
            return Err(IntakeError::invalid("meta", "the first message must carry the file's metadata"));
        }
        Some(Err(status)) => return Err(ApiError::Stream(status).into()),
    };
    let mut violations = FieldViolations::new();
    let file_name = match clean_file_name(&meta.file_name) {
        Ok(name) => name,
        Err(problem) => {
            violations.add("meta.file_name", problem);
            String::new()
        }
    };
    if meta.size <= 0 {
        violations.add("meta.size", "must be the file's size in bytes, at least 1");
    } else if meta.size as u64 > max_bytes {
        violations.add("meta.size", format!("{} bytes is over the limit of {max_bytes} bytes", meta.size));
    }
    if !violations.is_empty() {
        return Err(ApiError::Invalid(violations).into());
    }
    let declared = meta.size as u64;
    let id = uuid::Uuid::now_v7().to_string();
    let object_path = object_path(Utc::now(), &id);
    let mut sink = Sink { storage, path: Path::from(object_path.as_str()), writer: None };
    match receive_bytes(&mut sink, declared, allowed, &mut parts).await {
        Ok((kind, sha256)) => {
            sink.finish().await?;
            Ok(Received { id, file_name, kind, size: declared, sha256, object_path })
        }
        Err(error) => {
            sink.abort().await;
            Err(error)
        }
    }
}

async fn receive_bytes<S>(
    sink: &mut Sink<'_>,
    declared: u64,
    allowed: &[FileKind],
    parts: &mut S,
) -> Result<(FileKind, String), IntakeError>
where
    S: Stream<Item = Result<UploadAttachmentRequest, Status>> + Unpin + Send,
{
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    let mut stage = Stage::Sniffing(Vec::new());
    while let Some(part) = parts.next().await {
        let chunk = match part.map_err(ApiError::Stream)?.part {
            Some(Part::Chunk(chunk)) => chunk,
            Some(Part::Meta(_)) => {
                return Err(IntakeError::invalid("meta", "the metadata may only be sent first, once"));
            }
            None => continue,
        };
        received += chunk.len() as u64;
        if received > declared {
            return Err(IntakeError::invalid(
                "chunk",
                format!("more bytes than the declared size of {declared} bytes"),
            ));
        }
        hasher.update(&chunk);
        stage = match stage {
            Stage::Sniffing(mut head) => {
                head.extend_from_slice(&chunk);
                if head.len() < SNIFF_BYTES { Stage::Sniffing(head) } else { decide_early(sink, head, allowed).await? }
            }
            Stage::Buffering(mut all) => {
                all.extend_from_slice(&chunk);
                Stage::Buffering(all)
            }
            Stage::Streaming { kind, mut text } => {
                if let Some(check) = &mut text
                    && !check.feed(&chunk)
                {
                    return Err(refused("text that is not valid UTF-8", allowed));
                }
                sink.write(Bytes::from(chunk)).await?;
                Stage::Streaming { kind, text }
            }
        };
    }
    if received == 0 {
        return Err(IntakeError::invalid("chunk", "the file is empty"));
    }
    if received != declared {
        return Err(IntakeError::invalid("meta.size", format!("declared {declared} bytes, received {received}")));
    }
    let kind = match stage {
        Stage::Sniffing(all) | Stage::Buffering(all) => match detect(&all, true) {
            Detection::Allowed(kind) => {
                let kind = admit(kind, allowed)?;
                sink.put_whole(Bytes::from(all)).await?;
                kind
            }
            Detection::Refused(what) => return Err(refused(&what, allowed)),
            // A complete file is always decided; refuse rather than store the undecidable.
            Detection::NeedsWholeFile => return Err(refused("a file of an undecidable type", allowed)),
        },
        Stage::Streaming { kind, text } => {
            if text.is_some_and(|check| !check.finish()) {
                return Err(refused("text that is not valid UTF-8", allowed));
            }
            kind
        }
    };
    Ok((kind, hex::encode(hasher.finalize())))
}

/// The type is decided from the first [`SNIFF_BYTES`]: refuse, keep buffering, or start
/// streaming to the store.
async fn decide_early(sink: &mut Sink<'_>, head: Vec<u8>, allowed: &[FileKind]) -> Result<Stage, IntakeError> {
    match detect(&head, false) {
        Detection::Allowed(kind) => {
            let kind = admit(kind, allowed)?;
            let text = if kind == FileKind::Txt {
                let mut check = Utf8Check::default();
                check.feed(&head);
                Some(check)
            } else {
                None
            };
            sink.write(Bytes::from(head)).await?;
            Ok(Stage::Streaming { kind, text })
        }
        Detection::Refused(what) => Err(refused(&what, allowed)),
        Detection::NeedsWholeFile => Ok(Stage::Buffering(head)),
    }
}

fn refused(what: &str, allowed: &[FileKind]) -> IntakeError {
    let list: Vec<String> = allowed.iter().map(|kind| format!(".{}", kind.extension())).collect();
    IntakeError::invalid("chunk", format!("the content is {what}; allowed are {}", list.join(" ")))
}

/// The name as shown to people: the last path component, trimmed, without control characters.
pub fn clean_file_name(name: &str) -> Result<String, String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect::<String>().trim().to_owned();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return Err("required: the file's name".into());
    }
    let length = cleaned.chars().count();
    if length > MAX_FILE_NAME_CHARS {
        return Err(format!("{length} characters is longer than {MAX_FILE_NAME_CHARS}"));
    }
    Ok(cleaned)
}

/// Objects are grouped by upload day, which keeps listings and lifecycle rules manageable.
fn object_path(at: DateTime<Utc>, id: &str) -> String {
    format!("{:04}/{:02}/{:02}/{id}", at.year(), at.month(), at.day())
}

/// Writes one object, as a multipart upload once the bytes stream.
struct Sink<'a> {
    storage: &'a AttachmentStorage,
    path: Path,
    writer: Option<WriteMultipart>,
}

impl Sink<'_> {
    async fn write(&mut self, bytes: Bytes) -> Result<(), object_store::Error> {
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => {
                let upload = self.storage.store.put_multipart(&self.path).await?;
                self.writer.insert(WriteMultipart::new_with_chunk_size(upload, self.storage.part_bytes))
            }
        };
        // At most two parts in flight: memory stays bounded whatever the client sends.
        writer.wait_for_capacity(2).await?;
        writer.put(bytes);
        Ok(())
    }

    /// A file decided only once complete goes in one request.
    async fn put_whole(&mut self, bytes: Bytes) -> Result<(), object_store::Error> {
        match &mut self.writer {
            Some(_) => self.write(bytes).await,
            None => self.storage.store.put(&self.path, PutPayload::from_bytes(bytes)).await.map(|_| ()),
        }
    }

    async fn finish(self) -> Result<(), object_store::Error> {
        if let Some(writer) = self.writer {
            writer.finish().await?;
        }
        Ok(())
    }

    async fn abort(self) {
        if let Some(writer) = self.writer
            && let Err(error) = writer.abort().await
        {
            tracing::warn!(path = %self.path, %error, "failed to abort an attachment upload");
        }
    }
}

/// A stored file's bytes, read from the store as they are sent and cut into messages of
/// [`DOWNLOAD_CHUNK_BYTES`]: memory holds about one message whatever the file's size.
pub async fn read(
    storage: &AttachmentStorage,
    object_path: &str,
) -> Result<impl Stream<Item = Result<Bytes, object_store::Error>> + Send + 'static, object_store::Error> {
    let source = storage.store.get(&Path::from(object_path)).await?.into_stream();
    Ok(rechunk(source, DOWNLOAD_CHUNK_BYTES))
}

/// Cuts a stream of byte buffers of any size into buffers of `size` (the last one shorter).
pub fn rechunk<S, E>(source: S, size: usize) -> impl Stream<Item = Result<Bytes, E>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Send + 'static,
{
    let size = size.max(1);
    futures::stream::unfold((source, bytes::BytesMut::new(), false), move |(mut source, mut pending, mut done)| {
        async move {
            loop {
                if pending.len() >= size || (done && !pending.is_empty()) {
                    let take = pending.len().min(size);
                    let out = pending.split_to(take).freeze();
                    return Some((Ok(out), (source, pending, done)));
                }
                if done {
                    return None;
                }
                match source.next().await {
                    Some(Ok(bytes)) => pending.extend_from_slice(&bytes),
                    // A file cut short must not look complete: nothing more after the error.
                    Some(Err(error)) => {
                        pending.clear();
                        return Some((Err(error), (source, pending, true)));
                    }
                    None => done = true,
                }
            }
        }
    })
}

/// Deletes attachments uploaded more than `older_than` ago and never attached to an appeal nor
/// referenced by an answer or an incident: the row first (unless something claims it
/// meanwhile), then the object.
pub async fn sweep_orphans(
    store: &crate::store::Store,
    storage: &AttachmentStorage,
    older_than: std::time::Duration,
) -> Result<usize, IntakeError> {
    let cutoff = Utc::now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::days(1));
    let mut deleted = 0;
    for attachment in store.unattached_before(cutoff, 500).await? {
        if store.delete_unattached(&attachment.id).await? {
            if let Err(error) = storage.delete(&attachment.object_path).await {
                tracing::warn!(attachment_id = %attachment.id, %error, "orphan attachment's object not deleted");
            }
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Sweeps orphans every `period` until `shutdown`.
pub async fn run_janitor(
    store: crate::store::Store,
    storage: AttachmentStorage,
    older_than: std::time::Duration,
    period: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        match sweep_orphans(&store, &storage, older_than).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "orphan attachments deleted"),
            Err(error) => tracing::warn!(%error, "orphan attachment sweep failed"),
        }
        // Only today's count decides; yesterday's stays for a look after midnight.
        let before = crate::grpc::upload_day(chrono::Utc::now() - chrono::Days::new(1));
        if let Err(error) = store.forget_upload_usage_before(&before).await {
            tracing::warn!(%error, "old upload counts not deleted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ZIP archive with stored (uncompressed) entries, as office suites write their first entry.
    pub(crate) fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in entries {
            let offset = out.len() as u32;
            let header = |sig: &[u8], central: bool| {
                let mut h = sig.to_vec();
                if central {
                    h.extend_from_slice(&20u16.to_le_bytes());
                }
                h.extend_from_slice(&20u16.to_le_bytes()); // version needed
                h.extend_from_slice(&0u16.to_le_bytes()); // flags
                h.extend_from_slice(&0u16.to_le_bytes()); // stored
                h.extend_from_slice(&0u32.to_le_bytes()); // time, date
                h.extend_from_slice(&0u32.to_le_bytes()); // crc (unchecked by detection)
                h.extend_from_slice(&(data.len() as u32).to_le_bytes());
                h.extend_from_slice(&(data.len() as u32).to_le_bytes());
                h.extend_from_slice(&(name.len() as u16).to_le_bytes());
                h.extend_from_slice(&0u16.to_le_bytes()); // extra
                h
            };
            out.extend(header(b"PK\x03\x04", false));
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            let mut c = header(b"PK\x01\x02", true);
            c.extend_from_slice(&[0; 8]); // comment length, disk, internal attributes
            c.extend_from_slice(&0u32.to_le_bytes()); // external attributes
            c.extend_from_slice(&offset.to_le_bytes());
            c.extend_from_slice(name.as_bytes());
            central.push(c);
        }
        let start = out.len() as u32;
        let size: usize = central.iter().map(Vec::len).sum();
        for c in &central {
            out.extend_from_slice(c);
        }
        out.extend_from_slice(b"PK\x05\x06");
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(size as u32).to_le_bytes());
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    fn allowed(bytes: &[u8]) -> Option<FileKind> {
        match detect(bytes, true) {
            Detection::Allowed(kind) => Some(kind),
            Detection::Refused(_) | Detection::NeedsWholeFile => None,
        }
    }

    #[test]
    fn tells_allowed_types_by_their_content() {
        assert_eq!(allowed(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj"), Some(FileKind::Pdf));
        assert_eq!(allowed(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0]), Some(FileKind::Jpeg));
        assert_eq!(allowed(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some(FileKind::Png));
        assert_eq!(allowed(br"{\rtf1\ansi hello}"), Some(FileKind::Rtf));
        assert_eq!(allowed("Добрый день, прошу помочь.\n".as_bytes()), Some(FileKind::Txt));
        let odt = zip(&[("mimetype", b"application/vnd.oasis.opendocument.text"), ("content.xml", b"<x/>")]);
        assert_eq!(allowed(&odt), Some(FileKind::Odt));
        let odf = zip(&[("mimetype", b"application/vnd.oasis.opendocument.formula"), ("content.xml", b"<x/>")]);
        assert_eq!(allowed(&odf), Some(FileKind::Odf));
        let docx = zip(&[
            ("[Content_Types].xml", b"<Types/>"),
            ("_rels/.rels", b"<Relationships/>"),
            ("word/document.xml", b"<w:document/>"),
        ]);
        assert_eq!(allowed(&docx), Some(FileKind::Docx));
        let xlsx =
            zip(&[("[Content_Types].xml", b"<Types/>"), ("docProps/app.xml", b"<a/>"), ("xl/workbook.xml", b"<w/>")]);
        assert_eq!(allowed(&xlsx), Some(FileKind::Xlsx));
    }

    #[test]
    fn office_documents_are_told_from_their_first_entries() {
        // Word's own order of entries: the third names the format.
        let docx = zip(&[
            ("[Content_Types].xml", b"<Types/>"),
            ("_rels/.rels", b"<Relationships/>"),
            ("word/_rels/document.xml.rels", b"<Relationships/>"),
            ("word/document.xml", b"<w:document/>"),
        ]);
        assert_eq!(detect(&docx, false), Detection::Allowed(FileKind::Docx));
        let pptx = zip(&[
            ("[Content_Types].xml", b"<Types/>"),
            ("_rels/.rels", b"<Relationships/>"),
            ("ppt/presentation.xml", b"<p:presentation xmlns:p=\"urn:p\"/>"),
            ("ppt/slides/slide1.xml", b"<p:sld/>"),
        ]);
        assert_eq!(detect(&pptx, false), Detection::Allowed(FileKind::Pptx));
        // Too few entries to tell early: decided once the whole file is there.
        let short =
            zip(&[("[Content_Types].xml", b"<Types/>"), ("_rels/.rels", b"<R/>"), ("xl/workbook.xml", b"<w/>")]);
        assert_eq!(detect(&short, false), Detection::NeedsWholeFile);
        assert_eq!(detect(&short, true), Detection::Allowed(FileKind::Xlsx));
        let ods = zip(&[("mimetype", b"application/vnd.oasis.opendocument.spreadsheet")]);
        assert_eq!(detect(&ods, false), Detection::Allowed(FileKind::Ods));
    }

    #[test]
    fn refuses_other_types_whatever_their_name() {
        let exe = [b"MZ\x90\x00\x03\x00\x00\x00".as_slice(), &[0u8; 64]].concat();
        let Detection::Refused(what) = detect(&exe, true) else { panic!("an executable must be refused") };
        assert!(what.contains("exe"), "{what}");
        assert!(matches!(detect(b"GIF89a\x01\0\x01\0\0\0\0", true), Detection::Refused(_)));
        assert!(matches!(detect(&zip(&[("evil.exe", b"MZ")]), true), Detection::Refused(_)));
        assert!(matches!(detect(b"<html><script>alert(1)</script>", true), Detection::Refused(_)));
        assert!(matches!(detect(b"\x00\x01\x02binary", true), Detection::Refused(_)));
        assert!(matches!(detect(&[0xC3, 0x28, b'a'], true), Detection::Refused(_)), "invalid UTF-8");
    }

    #[test]
    fn containers_wait_for_the_whole_file_when_the_beginning_does_not_say() {
        let ole2 = [OLE2_MAGIC, &[0u8; 600]].concat();
        assert_eq!(detect(&ole2, false), Detection::NeedsWholeFile);
        let mut word = ole2.clone();
        word.extend("WordDocument".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(detect(&word, true), Detection::Allowed(FileKind::Doc));
        assert!(matches!(detect(&ole2, true), Detection::Refused(_)), "an OLE2 file of no known kind (e.g. .msi)");
        let archive = zip(&[("a.txt", b"x"), ("b.txt", b"y")]);
        assert_eq!(detect(&archive[..archive.len() - 22], false), Detection::NeedsWholeFile);
    }

    #[test]
    fn a_type_told_by_content_is_refused_when_the_caller_may_not_upload_it() {
        assert_eq!(admit(FileKind::Png, &FileKind::STAFF).unwrap(), FileKind::Png);
        let refusal = admit(FileKind::Png, &FileKind::CITIZEN).unwrap_err().to_string();
        let (what, allowed) = refusal.split_once("allowed are").expect("the refusal lists what is allowed");
        assert!(what.contains("image/png"), "{refusal}");
        assert!(allowed.contains(".jpeg") && !allowed.contains(".png"), "{refusal}");
    }

    #[tokio::test]
    async fn downloads_are_cut_into_equal_chunks_whatever_the_store_returns() {
        let parts: Vec<Result<Bytes, ()>> =
            vec![Ok(Bytes::from(vec![1u8; 5])), Ok(Bytes::from(vec![2u8; 1])), Ok(Bytes::from(vec![3u8; 9]))];
        let chunks: Vec<Bytes> =
            rechunk(futures::stream::iter(parts), 4).map(|chunk| chunk.unwrap()).collect::<Vec<_>>().await;
        assert_eq!(chunks.iter().map(Bytes::len).collect::<Vec<_>>(), vec![4, 4, 4, 3]);
        assert_eq!(chunks.concat(), [vec![1u8; 5], vec![2u8; 1], vec![3u8; 9]].concat());
    }

    #[test]
    fn utf8_is_checked_across_chunk_boundaries() {
        let text = "ёж".as_bytes();
        let mut check = Utf8Check::default();
        assert!(check.feed(&text[..1]) && !check.finish());
        assert!(check.feed(&text[1..3]) && !check.finish());
        assert!(check.feed(&text[3..]) && check.finish());
        assert!(!Utf8Check::default().feed(b"a\0b"));
    }

    #[test]
    fn file_names_lose_their_paths_and_control_characters() {
        assert_eq!(clean_file_name("C:\\Users\\me\\скан.pdf").unwrap(), "скан.pdf");
        assert_eq!(clean_file_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(clean_file_name(" a\u{0}b.txt ").unwrap(), "ab.txt");
        assert!(clean_file_name("dir/").is_err());
        assert!(clean_file_name(&"x".repeat(300)).is_err());
    }
}
