//! Files in the cabinet: the download of an appeal's, an answer's or an incident's file, streamed
//! from intake to the browser; the uploads of the answer and incident forms, streamed to intake;
//! and the forms that carry them (multipart), with their CSRF token read without buffering them.
//!
//! Intake decides who may read a file (staff of the organization of its appeal, answer or
//! incident) and what may be uploaded (types told by content, its size limit); the cabinet only
//! passes the person's token, the bytes and intake's answer.

use std::collections::HashMap;
use std::path::PathBuf;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, header};
use maud::{Markup, html};
use pos_proto::v1 as pb;
use pos_proto::v1::attachment_chunk::Part as ChunkPart;
use pos_proto::v1::upload_attachment_request::Part as UploadPart;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Api, WebError, signed_in};
use crate::App;
use crate::session::Session;

/// Intake's limit for one file; it enforces its own, this one keeps the cabinet's spool small.
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// Files one form may carry.
pub const MAX_FILES: usize = 5;
/// The body limit of the routes that take files (the forms' other fields are small).
pub const MAX_MULTIPART_BYTES: usize = MAX_FILES * MAX_FILE_BYTES as usize + 512 * 1024;
/// How far into a multipart body the CSRF guard looks for the leading `csrf` field.
const CSRF_PREFIX_BYTES: usize = 16 * 1024;
/// The upload's chunk size (intake's download uses the same).
const CHUNK_BYTES: usize = 64 * 1024;

/// `GET /cabinet/attachments/{id}`: the file as intake streams it, never held whole here. The
/// last chunk is held back until the bytes match the size and sha256 intake announced, so a
/// damaged transfer ends as a failed download rather than a wrong file.
pub async fn download(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let session = match signed_in(&app, &headers).await {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    let api = Api::new(&app, &session);
    let request = api.request(pb::DownloadAttachmentRequest { attachment_id: id.clone() });
    let mut stream = match api.intake().download_attachment(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return download_refused(&status, &session, &id),
    };
    let info = match stream.message().await {
        Ok(Some(pb::AttachmentChunk { part: Some(ChunkPart::Info(info)) })) => info,
        Ok(_) => return WebError::Internal("a download without its description".into()).into_response(),
        Err(status) => return download_refused(&status, &session, &id),
    };
    let Ok(size) = u64::try_from(info.size) else {
        return WebError::Internal("a negative size".into()).into_response();
    };
    let body = Body::from_stream(verified(stream, size, info.sha256.to_lowercase()));
    let content_type =
        HeaderValue::from_str(&info.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(disposition) = HeaderValue::from_str(&content_disposition(&info.file_name)) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(sha) = HeaderValue::from_str(&info.sha256) {
        headers.insert("x-content-sha256", sha);
    }
    response
}

fn download_refused(status: &tonic::Status, session: &Session, id: &str) -> Response {
    match status.code() {
        // Not an attachment id at all: as if it did not exist.
        tonic::Code::InvalidArgument => WebError::NotFound.into_response(),
        tonic::Code::PermissionDenied => {
            tracing::warn!(target: "security", subject = %session.subject, attachment_id = %id, "download refused");
            WebError::Forbidden("Этот файл вам недоступен.").into_response()
        }
        _ => WebError::from_status(status, false).into_response(),
    }
}

/// The chunks after the description, checked against `size` and `sha256` before the last goes.
fn verified(
    stream: tonic::Streaming<pb::AttachmentChunk>,
    size: u64,
    sha256: String,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    struct State {
        stream: tonic::Streaming<pb::AttachmentChunk>,
        hasher: Sha256,
        received: u64,
        held: Option<Bytes>,
        done: bool,
    }
    let start = State { stream, hasher: Sha256::new(), received: 0, held: None, done: false };
    futures::stream::unfold(start, move |mut state| {
        let sha256 = sha256.clone();
        async move {
            if state.done {
                return None;
            }
            loop {
                match state.stream.message().await {
                    Ok(Some(pb::AttachmentChunk { part: Some(ChunkPart::Chunk(bytes)) })) => {
                        state.hasher.update(&bytes);
                        state.received += bytes.len() as u64;
                        if state.received > size {
                            state.done = true;
                            return Some((Err(broken("more bytes than announced")), state));
                        }
                        let next = Bytes::from(bytes);
                        if let Some(previous) = state.held.replace(next) {
                            return Some((Ok(previous), state));
                        }
                    }
                    Ok(Some(_)) => {
                        state.done = true;
                        return Some((Err(broken("an unexpected part in the download")), state));
                    }
                    Ok(None) => {
                        state.done = true;
                        let digest = hex::encode(state.hasher.clone().finalize());
                        if state.received != size || digest != sha256 {
                            tracing::error!(
                                received = state.received,
                                size,
                                "a download does not match its size or sha256: aborted"
                            );
                            return Some((Err(broken("the file does not match its sha256")), state));
                        }
                        let last = state.held.take()?;
                        return Some((Ok(last), state));
                    }
                    Err(status) => {
                        state.done = true;
                        tracing::warn!(code = ?status.code(), "a download broke off");
                        return Some((Err(broken("the download broke off")), state));
                    }
                }
            }
        }
    })
}

fn broken(why: &'static str) -> std::io::Error {
    std::io::Error::other(why)
}

/// `attachment` with the name for old clients (ASCII, quotes and controls replaced) and the
/// exact one in UTF-8 (RFC 6266, RFC 5987).
pub fn content_disposition(file_name: &str) -> String {
    let name = if file_name.trim().is_empty() { "file" } else { file_name };
    let fallback: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let mut encoded = String::new();
    for byte in name.bytes() {
        // RFC 5987 attr-char.
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// A human-readable size: `812 Б`, `14 КБ`, `2,5 МБ`.
pub fn size_text(size: i64) -> String {
    const KB: i64 = 1024;
    match size {
        s if s < KB => format!("{s} Б"),
        s if s < KB * KB => format!("{} КБ", (s + KB - 1) / KB),
        s => format!("{:.1} МБ", s as f64 / (KB * KB) as f64).replace('.', ","),
    }
}

/// What people call a content type.
pub fn type_text(content_type: &str) -> &str {
    match content_type {
        "application/pdf" => "PDF",
        "image/png" => "PNG",
        "image/jpeg" => "JPEG",
        "image/tiff" => "TIFF",
        "text/plain" | "text/plain; charset=utf-8" => "текст",
        "application/msword" => "DOC",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "DOCX",
        "application/vnd.ms-excel" => "XLS",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "XLSX",
        "application/rtf" => "RTF",
        "application/zip" => "ZIP",
        other => other,
    }
}

/// A list of files with their download links; nothing when there are none.
pub fn list(files: &[pb::Attachment], label: &str) -> Markup {
    html! {
        @if !files.is_empty() {
            ul.files aria-label=(label) {
                @for file in files {
                    li data-attachment=(file.id) {
                        @if file.file_name.is_empty() {
                            span.muted { "файл недоступен" }
                        } @else {
                            // Content-Disposition names the file (attachment): the link needs no `download`.
                            a href={ "/cabinet/attachments/" (file.id) } { (file.file_name) }
                            span.muted { " (" (type_text(&file.content_type)) ", " (size_text(file.size)) ")" }
                        }
                    }
                }
            }
        }
    }
}

/// How many ids one DescribeAttachments call names (intake takes at most 100).
const DESCRIBE_BATCH: usize = 100;

/// The files behind `ids` (an answer's, an incident's), described by intake's
/// DescribeAttachments: nothing else tells a file's name to staff, and no content is read (a
/// download would write an audit line per file per page view). A file intake does not show comes
/// back without a name.
pub async fn describe(api: &Api<'_>, ids: &[String]) -> HashMap<String, pb::Attachment> {
    let mut unique: Vec<String> = Vec::new();
    for id in ids {
        if !unique.contains(id) {
            unique.push(id.clone());
        }
    }
    let batches = unique.chunks(DESCRIBE_BATCH).map(|batch| async move {
        match describe_batch(api, batch).await {
            Ok(infos) => infos,
            // One file the person may not read (or one gone) refuses the whole batch: ask file
            // by file so that the others are still named.
            Err(status) if matches!(status.code(), tonic::Code::PermissionDenied | tonic::Code::NotFound) => {
                let single = batch.iter().map(|id| describe_batch(api, std::slice::from_ref(id)));
                let answers = futures::future::join_all(single).await;
                answers
                    .into_iter()
                    .zip(batch)
                    .filter_map(|(answer, id)| match answer {
                        Ok(infos) => Some(infos),
                        Err(status) => {
                            tracing::warn!(code = ?status.code(), attachment_id = %id, "file not described");
                            None
                        }
                    })
                    .flatten()
                    .collect()
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), files = batch.len(), "files not described");
                Vec::new()
            }
        }
    });
    let mut files: HashMap<String, pb::Attachment> =
        unique.iter().map(|id| (id.clone(), pb::Attachment { id: id.clone(), ..Default::default() })).collect();
    for info in futures::future::join_all(batches).await.into_iter().flatten() {
        let attachment = pb::Attachment {
            id: info.attachment_id.clone(),
            file_name: info.file_name,
            content_type: info.content_type,
            size: info.size,
        };
        files.insert(info.attachment_id, attachment);
    }
    files
}

async fn describe_batch(api: &Api<'_>, ids: &[String]) -> Result<Vec<pb::AttachmentInfo>, tonic::Status> {
    let request = api.request(pb::DescribeAttachmentsRequest { attachment_ids: ids.to_vec() });
    Ok(api.intake().describe_attachments(request).await?.into_inner().attachments)
}

/// The files of `ids`, in order, from what [`describe`] found.
pub fn pick(files: &HashMap<String, pb::Attachment>, ids: &[String]) -> Vec<pb::Attachment> {
    ids.iter()
        .map(|id| files.get(id).cloned().unwrap_or_else(|| pb::Attachment { id: id.clone(), ..Default::default() }))
        .collect()
}

/// A submitted form: its text fields, and the files uploaded to intake from its file fields.
#[derive(Debug, Default)]
pub struct Submitted {
    pub fields: HashMap<String, String>,
    /// Every value of each field, for the repeated ones (checkboxes).
    pub all: Vec<(String, String)>,
    pub attachment_ids: Vec<String>,
    /// Why a file was not taken, in Russian, to show beside the file field.
    pub file_error: Option<String>,
}

impl Submitted {
    pub fn field(&self, name: &str) -> String {
        self.fields.get(name).map(|v| v.trim().to_owned()).unwrap_or_default()
    }

    pub fn values(&self, name: &str) -> Vec<String> {
        self.all.iter().filter(|(key, _)| key == name).map(|(_, value)| value.clone()).collect()
    }
}

/// Reads a form posted as either URL-encoded or multipart; files of the field `files` go to
/// intake as they are read (each spooled to a temporary file first: intake wants the size
/// before the bytes). Called only after the person's roles were checked.
pub async fn read_form(app: &App, session: &Session, request: Request) -> Result<Submitted, Response> {
    let multipart = is_multipart(request.headers());
    if !multipart {
        let axum::Form(pairs) = axum::Form::<Vec<(String, String)>>::from_request(request, app)
            .await
            .map_err(IntoResponse::into_response)?;
        return Ok(Submitted { fields: pairs.iter().cloned().collect(), all: pairs, ..Default::default() });
    }
    let mut multipart = Multipart::from_request(request, app).await.map_err(IntoResponse::into_response)?;
    let api = Api::new(app, session);
    let mut submitted = Submitted::default();
    let mut files = 0;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(error) => return Err((error.status(), error.body_text()).into_response()),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        match file_name {
            Some(file_name) if name == "files" => {
                // An empty file input still sends a part, without a name.
                if file_name.is_empty() {
                    continue;
                }
                files += 1;
                if files > MAX_FILES || submitted.file_error.is_some() {
                    submitted.file_error.get_or_insert(format!("Можно приложить не больше {MAX_FILES} файлов."));
                    continue;
                }
                match upload(&api, &file_name, field).await {
                    Ok(id) => submitted.attachment_ids.push(id),
                    Err(error) => submitted.file_error = Some(error),
                }
            }
            Some(_) => continue,
            None => {
                let value = field.text().await.map_err(|e| (e.status(), e.body_text()).into_response())?;
                submitted.fields.insert(name.clone(), value.clone());
                submitted.all.push((name, value));
            }
        }
    }
    Ok(submitted)
}

/// Removes the spooled upload however the upload ends.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Spools one file field to disk (at most [`MAX_FILE_BYTES`]) and streams it to intake's
/// UploadAttachment; the attachment's id, or what to tell the person.
async fn upload(
    api: &Api<'_>,
    file_name: &str,
    mut field: axum::extract::multipart::Field<'_>,
) -> Result<String, String> {
    let spool = Spool(std::env::temp_dir().join(format!("pos-web-upload-{}", crate::session::random_token())));
    let failed = |error: &dyn std::fmt::Display| {
        tracing::error!(error = %error, "upload spool failed");
        format!("Файл «{file_name}» не удалось принять, повторите попытку.")
    };
    let mut file = tokio::fs::File::create(&spool.0).await.map_err(|e| failed(&e))?;
    let mut size: u64 = 0;
    loop {
        match field.chunk().await {
            Ok(Some(bytes)) => {
                size += bytes.len() as u64;
                if size > MAX_FILE_BYTES {
                    return Err(too_large(file_name));
                }
                file.write_all(&bytes).await.map_err(|e| failed(&e))?;
            }
            Ok(None) => break,
            Err(error) => return Err(failed(&error)),
        }
    }
    file.flush().await.map_err(|e| failed(&e))?;
    drop(file);
    if size == 0 {
        return Err(format!("Файл «{file_name}» пустой."));
    }
    let file = tokio::fs::File::open(&spool.0).await.map_err(|e| failed(&e))?;
    let meta = pb::UploadAttachmentRequest {
        part: Some(UploadPart::Meta(pb::AttachmentMeta { file_name: file_name.to_owned(), size: size as i64 })),
    };
    let chunks = futures::stream::unfold(file, |mut file| async move {
        let mut buffer = vec![0; CHUNK_BYTES];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((pb::UploadAttachmentRequest { part: Some(UploadPart::Chunk(buffer)) }, file))
            }
            // The stream ends short; intake refuses a size that does not match.
            Err(error) => {
                tracing::error!(%error, "upload spool unreadable");
                None
            }
        }
    });
    let stream = futures::stream::once(async move { meta }).chain(chunks);
    match api.intake().upload_attachment(api.request(stream)).await {
        Ok(response) => Ok(response.into_inner().attachment_id),
        Err(status) => Err(upload_refused(&status, file_name)),
    }
}

fn too_large(file_name: &str) -> String {
    format!("Файл «{file_name}» больше {} МБ.", MAX_FILE_BYTES / 1024 / 1024)
}

/// Intake's refusal of a file, in Russian.
fn upload_refused(status: &tonic::Status, file_name: &str) -> String {
    if status.code() != tonic::Code::InvalidArgument {
        tracing::warn!(code = ?status.code(), "upload refused");
        return match status.code() {
            tonic::Code::PermissionDenied => format!("Файл «{file_name}» не принят: вам недоступна загрузка файлов."),
            _ => format!("Файл «{file_name}» не удалось загрузить, повторите попытку позже."),
        };
    }
    let fields = pos_platform::error::violated_fields(status);
    if fields.iter().any(|f| f == "chunk") {
        // Intake names what the content is and what is allowed: "…; allowed are .pdf .png".
        let allowed = status.message().rsplit_once("allowed are ").map(|(_, list)| list.trim().to_owned());
        return match allowed {
            Some(list) if !list.is_empty() => {
                format!("Файл «{file_name}» не принят: такой тип файлов не допускается. Допустимые типы: {list}.")
            }
            _ => format!("Файл «{file_name}» не принят: такой тип файлов не допускается."),
        };
    }
    if fields.iter().any(|f| f == "meta.size") {
        return too_large(file_name);
    }
    if fields.iter().any(|f| f == "meta.file_name") {
        return format!("Имя файла «{file_name}» не подходит: переименуйте файл.");
    }
    format!("Файл «{file_name}» не принят.")
}

/// Whether a request carries a multipart form.
pub fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}

fn boundary(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    value.split(';').map(str::trim).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// The CSRF token of a multipart form whose first field is `csrf`, read from at most the first
/// [`CSRF_PREFIX_BYTES`]; the body to hand on is the bytes read followed by the rest, unread.
pub async fn leading_csrf_field(headers: &HeaderMap, body: Body) -> (Option<String>, Body) {
    let Some(boundary) = boundary(headers) else { return (None, body) };
    let mut stream = body.into_data_stream();
    let mut prefix: Vec<u8> = Vec::new();
    let mut token = None;
    let mut failed = None;
    while prefix.len() < CSRF_PREFIX_BYTES {
        if let Some(found) = first_field(&prefix, &boundary, "csrf") {
            token = found;
            break;
        }
        match stream.next().await {
            Some(Ok(bytes)) => prefix.extend_from_slice(&bytes),
            Some(Err(error)) => {
                failed = Some(error);
                break;
            }
            None => {
                token = first_field(&prefix, &boundary, "csrf").flatten();
                break;
            }
        }
    }
    let head = futures::stream::once(async move { Ok::<_, axum::Error>(Bytes::from(prefix)) });
    let failed = futures::stream::iter(failed.map(Err));
    (token, Body::from_stream(head.chain(failed).chain(stream)))
}

/// `Some(Some(value))` when the body's first part is the field `name`, `Some(None)` when the
/// first part is complete and is another, `None` when more bytes are needed.
fn first_field(body: &[u8], boundary: &str, name: &str) -> Option<Option<String>> {
    let opening = format!("--{boundary}\r\n");
    if body.len() < opening.len() {
        return None;
    }
    if !body.starts_with(opening.as_bytes()) {
        return Some(None);
    }
    let rest = &body[opening.len()..];
    let headers_end = find(rest, b"\r\n\r\n")?;
    let part_headers = String::from_utf8_lossy(&rest[..headers_end]).to_ascii_lowercase();
    let value_start = headers_end + 4;
    let closing = format!("\r\n--{boundary}");
    let value_len = find(&rest[value_start..], closing.as_bytes())?;
    let named = part_headers.lines().any(|line| {
        line.starts_with("content-disposition:")
            && line.split(';').map(str::trim).any(|p| p == format!("name=\"{name}\"") || p == format!("name={name}"))
            && !line.contains("filename")
    });
    if !named {
        return Some(None);
    }
    Some(std::str::from_utf8(&rest[value_start..value_start + value_len]).ok().map(str::to_owned))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// The file field of a form, with the error of the last attempt beside it.
pub fn file_field(id: &str, label: &str, accept: &str, error: Option<&str>) -> Markup {
    let error_id = format!("{id}-error");
    html! {
        div.field {
            label for=(id) { (label) }
            input id=(id) type="file" name="files" multiple accept=(accept)
                aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| error_id.as_str())];
            @if let Some(error) = error {
                p.flash.error.field-error id=(error_id) role="alert" { (error) }
            } @else {
                p.hint { "До " (MAX_FILES) " файлов, каждый не больше " (MAX_FILE_BYTES / 1024 / 1024) " МБ." }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_go_to_the_browser_in_utf8_and_ascii() {
        assert_eq!(
            content_disposition("Справка 1.pdf"),
            "attachment; filename=\"_______ 1.pdf\"; filename*=UTF-8''%D0%A1%D0%BF%D1%80%D0%B0%D0%B2%D0%BA%D0%B0%201.pdf"
        );
        assert_eq!(
            content_disposition("a\"b\r\n.png"),
            "attachment; filename=\"a_b__.png\"; filename*=UTF-8''a%22b%0D%0A.png"
        );
        assert!(content_disposition("").starts_with("attachment; filename=\"file\""));
    }

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(size_text(812), "812 Б");
        assert_eq!(size_text(14 * 1024 - 5), "14 КБ");
        assert_eq!(size_text(5 * 1024 * 1024 / 2), "2,5 МБ");
    }

    #[test]
    fn the_leading_csrf_field_is_found_without_the_rest() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc123\r\n--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n\r\n";
        assert_eq!(first_field(body, "XyZ", "csrf"), Some(Some("abc123".to_owned())));
        assert_eq!(first_field(&body[..40], "XyZ", "csrf"), None, "more bytes needed");
        let other = b"--XyZ\r\nContent-Disposition: form-data; name=\"version\"\r\n\r\n3\r\n--XyZ\r\n";
        assert_eq!(first_field(other, "XyZ", "csrf"), Some(None), "another first field: no token");
        let file = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"; filename=\"x\"\r\n\r\nabc\r\n--XyZ";
        assert_eq!(first_field(file, "XyZ", "csrf"), Some(None), "a file named csrf is no token");
    }

    #[tokio::test]
    async fn the_body_after_the_token_is_handed_on_whole() {
        let text = "--b1\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok\r\n--b1\r\nContent-Disposition: form-data; name=\"v\"\r\n\r\n7\r\n--b1--\r\n";
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            text.as_bytes().chunks(7).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("multipart/form-data; boundary=b1"));
        assert!(is_multipart(&headers));
        let (token, body) = leading_csrf_field(&headers, Body::from_stream(futures::stream::iter(chunks))).await;
        assert_eq!(token.as_deref(), Some("tok"));
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        assert_eq!(bytes, text.as_bytes());
    }
}
