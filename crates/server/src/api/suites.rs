//! Suites: a GLUE folder (or a zip of it) uploaded in one request becomes one dataset per
//! task, each with its task's metric, registered together or not at all; and the suites a
//! team can read (its own and the public benchmark suite).

use std::io::Read;

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::Json;
use rankfit_domain::dataset::suite::{self, FileError, SuiteFile};
use rankfit_store::datasets::DatasetRow;
use rankfit_store::suites::{self, NewSuite, SuiteRow};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Auth;
use crate::error::ErrorBody;
use crate::{ApiResult, AppError, AppState};

#[derive(Serialize, ToSchema)]
pub struct SuiteBody {
    pub suite: SuiteRow,
    pub datasets: Vec<DatasetRow>,
}

#[derive(Serialize, ToSchema)]
pub struct SuiteList {
    /// The team's suites, then the public ones.
    pub suites: Vec<SuiteRow>,
}

/// The multipart form of a suite upload (documentation of `POST /suites`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadSuite {
    /// The folder's files, each named by its path (`CoLA/train.tsv`), or one `.zip` of the folder.
    #[schema(value_type = Vec<String>, format = Binary)]
    file: Vec<Vec<u8>>,
    /// Default `GLUE`; datasets are named `<name> / <task>`.
    name: Option<String>,
    /// `glue` (the only kind uploads support).
    kind: Option<String>,
}

/// Most files one suite upload may hold (GLUE has 9 tasks × a handful of files).
const MAX_FILES: usize = 200;

fn invalid_field(field: &str, message: impl Into<String>) -> AppError {
    AppError::unprocessable("invalid_field", format!("{field}: {}", message.into())).with_details(json!({ "field": field }))
}

fn too_large(cap: usize) -> AppError {
    AppError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "upload_too_large",
        format!("the upload is larger than this server's upload limit of {cap} bytes (all files together, unzipped)"),
    )
}

struct SuiteForm {
    name: Option<String>,
    kind: Option<String>,
    files: Vec<SuiteFile>,
}

/// Reads the form: `name`, `kind` (glue) and any number of `file` parts, each named by its
/// path in the folder (`CoLA/train.tsv`), or one `.zip` of the folder. The total, unzipped,
/// is capped at the server's upload limit.
async fn read_form(mut mp: Multipart, cap: usize) -> ApiResult<SuiteForm> {
    let mut form = SuiteForm { name: None, kind: None, files: Vec::new() };
    let mut total = 0usize;
    while let Some(mut field) = mp.next_field().await.map_err(|e| AppError::bad_request(format!("malformed multipart body: {e}")))? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" | "files" => {
                let path = field.file_name().unwrap_or("upload").to_string();
                let mut buf = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(|e| AppError::bad_request(format!("upload interrupted: {e}")))? {
                    total += chunk.len();
                    if total > cap {
                        return Err(too_large(cap));
                    }
                    buf.extend_from_slice(&chunk);
                }
                if path.to_ascii_lowercase().ends_with(".zip") {
                    let (files, unzipped) = tokio::task::spawn_blocking(move || unzip(&buf, cap)).await.map_err(AppError::internal)??;
                    total += unzipped;
                    if total > cap {
                        return Err(too_large(cap));
                    }
                    form.files.extend(files);
                } else {
                    form.files.push(SuiteFile { path, bytes: buf });
                }
                if form.files.len() > MAX_FILES {
                    return Err(invalid_field("file", format!("more than {MAX_FILES} files; upload the GLUE folder only")));
                }
            }
            "name" | "kind" => {
                let value = field.text().await.map_err(|e| AppError::bad_request(format!("field {name}: {e}")))?;
                let value = Some(value.trim().to_string()).filter(|v| !v.is_empty());
                if name == "name" {
                    form.name = value;
                } else {
                    form.kind = value;
                }
            }
            other => return Err(AppError::bad_request(format!("unknown form field {other:?}"))),
        }
    }
    Ok(form)
}

/// The `.tsv` members of a zip (directories, `__MACOSX` and other files skipped), with the
/// unzipped total; a member that unzips past `cap` stops the read (zip bombs).
fn unzip(bytes: &[u8], cap: usize) -> ApiResult<(Vec<SuiteFile>, usize)> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| invalid_field("file", format!("not a readable zip archive: {e}")))?;
    let mut files = Vec::new();
    let mut total = 0usize;
    for i in 0..archive.len() {
        let entry = archive.by_index(i).map_err(|e| invalid_field("file", format!("zip member {i}: {e}")))?;
        let path = entry.name().to_string();
        if entry.is_dir() || path.contains("__MACOSX") || !path.to_ascii_lowercase().ends_with(".tsv") {
            continue;
        }
        let mut buf = Vec::new();
        entry.take((cap - total.min(cap)) as u64 + 1).read_to_end(&mut buf).map_err(|e| invalid_field("file", format!("{path}: {e}")))?;
        total += buf.len();
        if total > cap {
            return Err(too_large(cap));
        }
        files.push(SuiteFile { path, bytes: buf });
    }
    Ok((files, total))
}

fn rejected(errors: Vec<FileError>) -> AppError {
    let first = errors.first().map(ToString::to_string).unwrap_or_default();
    AppError::unprocessable("invalid_suite", format!("the suite was rejected ({} problem(s)); first: {first}", errors.len()))
        .with_details(json!({ "errors": errors }))
}

/// Register a GLUE folder (or a zip of it) as one suite: a dataset per task present, with
/// its metric; the dev file is the test split, validation is carved from train. All or
/// nothing; problems carry their file and line.
#[utoipa::path(post, path = "/suites", tag = "datasets", request_body(content = UploadSuite, content_type = "multipart/form-data"),
    responses((status = 201, body = SuiteBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload(State(st): State<AppState>, Auth(team): Auth, mp: Multipart) -> ApiResult<(StatusCode, Json<SuiteBody>)> {
    let form = read_form(mp, st.config.max_upload_bytes).await?;
    match form.kind.as_deref() {
        None | Some("glue") => {}
        Some(other) => return Err(invalid_field("kind", format!("unknown suite kind {other:?}; uploads support glue"))),
    }
    let name = form.name.unwrap_or_else(|| "GLUE".into());
    if name.len() > 150 || name.chars().any(char::is_control) {
        return Err(invalid_field("name", "1 to 150 printable characters"));
    }
    if form.files.is_empty() {
        return Err(invalid_field(
            "file",
            "no files were attached: send the GLUE folder's files (multipart `file` parts named by their path) or a zip of it",
        ));
    }
    let files = form.files;
    let parsed = tokio::task::spawn_blocking(move || suite::parse_glue(&files)).await.map_err(AppError::internal)?.map_err(rejected)?;
    let datasets = parsed.datasets.iter().map(|d| suites::new_dataset(Some(team.id), &name, d)).collect::<Result<Vec<_>, _>>()?;
    let new = NewSuite { id: Uuid::new_v4(), team_id: Some(team.id), name, kind: "glue".into(), report: suites::report(&parsed) };
    let (suite, rows) = suites::create(&st.pool, &st.artifacts, &new, datasets).await?;
    Ok((StatusCode::CREATED, Json(SuiteBody { suite, datasets: rows })))
}

/// The team's suites, then the public ones.
#[utoipa::path(get, path = "/suites", tag = "datasets", responses((status = 200, body = SuiteList)))]
pub async fn list(State(st): State<AppState>, Auth(team): Auth) -> ApiResult<Json<SuiteList>> {
    Ok(Json(SuiteList { suites: suites::list(&st.pool, team.id).await? }))
}

/// A suite (yours or public) with its datasets and report.
#[utoipa::path(get, path = "/suites/{id}", tag = "datasets", params(("id" = String, Path)),
    responses((status = 200, body = SuiteBody), (status = 404, body = ErrorBody)))]
pub async fn get(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<Json<SuiteBody>> {
    let id = super::parse_id(&id, "suite")?;
    let (suite, datasets) = suites::get(&st.pool, team.id, id).await.map_err(|e| match e {
        rankfit_store::StoreError::NotFound => AppError::not_found("suite"),
        other => other.into(),
    })?;
    Ok(Json(SuiteBody { suite, datasets }))
}
