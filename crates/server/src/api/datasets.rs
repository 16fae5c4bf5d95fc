//! Dataset upload (multipart), list, get, delete.
//!
//! An upload is read with a hard size cap, parsed and validated completely, and only
//! then written: first the file to the artifact store, then the row. If the row cannot
//! be written the file is removed again, so a rejected upload leaves nothing behind.

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use rankfit_domain::dataset::{self, DataFormat, ParseOptions, ParsedDataset, Split};
use rankfit_domain::task::TaskFamily;
use rankfit_store::datasets::{self, DatasetRow, NewDataset};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Auth;
use crate::error::ErrorBody;
use crate::{ApiResult, AppError, AppState};

#[derive(Serialize, ToSchema)]
pub struct DatasetBody {
    pub dataset: DatasetRow,
}

#[derive(Serialize, ToSchema)]
pub struct DatasetList {
    /// The team's datasets, newest first, then the public benchmark datasets.
    pub datasets: Vec<DatasetRow>,
}

/// The multipart form of an upload (documentation of `POST /datasets`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadDataset {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Defaults to the file name.
    name: Option<String>,
    /// jsonl, csv, glue_tsv or bigbench; defaults from the file extension.
    format: Option<String>,
    /// classification (default), regression, summarization or instruction.
    task_family: Option<String>,
    /// For glue_tsv: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli.
    glue_task: Option<String>,
    text_column: Option<String>,
    text_pair_column: Option<String>,
    label_column: Option<String>,
    /// train, validation or test: the split of every row the file does not place.
    split: Option<String>,
}

/// The fields of an upload form besides the file.
#[derive(Default)]
struct UploadForm {
    name: Option<String>,
    format: Option<String>,
    task_family: Option<String>,
    glue_task: Option<String>,
    text_column: Option<String>,
    text_pair_column: Option<String>,
    label_column: Option<String>,
    split: Option<String>,
    file_name: Option<String>,
    file: Option<Bytes>,
}

fn invalid_field(field: &str, message: impl Into<String>) -> AppError {
    AppError::unprocessable("invalid_field", format!("{field}: {}", message.into())).with_details(json!({ "field": field }))
}

async fn read_form(mut mp: Multipart, cap: usize) -> ApiResult<UploadForm> {
    let mut form = UploadForm::default();
    while let Some(mut field) = mp.next_field().await.map_err(|e| AppError::bad_request(format!("malformed multipart body: {e}")))? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            form.file_name = field.file_name().map(str::to_string);
            let mut buf = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| AppError::bad_request(format!("upload interrupted: {e}")))? {
                if buf.len() + chunk.len() > cap {
                    return Err(AppError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "upload_too_large",
                        format!("the file is larger than this server's upload limit of {cap} bytes"),
                    ));
                }
                buf.extend_from_slice(&chunk);
            }
            form.file = Some(Bytes::from(buf));
        } else {
            let value = field.text().await.map_err(|e| AppError::bad_request(format!("field {name}: {e}")))?;
            if value.len() > 1000 {
                return Err(invalid_field(&name, "longer than 1000 characters"));
            }
            let value = Some(value.trim().to_string()).filter(|v| !v.is_empty());
            match name.as_str() {
                "name" => form.name = value,
                "format" => form.format = value,
                "task_family" => form.task_family = value,
                "glue_task" => form.glue_task = value,
                "text_column" => form.text_column = value,
                "text_pair_column" => form.text_pair_column = value,
                "label_column" => form.label_column = value,
                "split" => form.split = value,
                other => return Err(AppError::bad_request(format!("unknown form field {other:?}"))),
            }
        }
    }
    Ok(form)
}

/// Format from the form, else from the file extension.
fn pick_format(form: &UploadForm) -> ApiResult<DataFormat> {
    if let Some(f) = &form.format {
        return DataFormat::parse(f)
            .ok_or_else(|| invalid_field("format", format!("unknown format {f:?}; use jsonl, csv, glue_tsv or bigbench")));
    }
    let ext = form.file_name.as_deref().and_then(|n| n.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("jsonl") | Some("ndjson") => Ok(DataFormat::Jsonl),
        Some("csv") => Ok(DataFormat::Csv),
        Some("tsv") => Ok(DataFormat::GlueTsv),
        Some("json") => Ok(DataFormat::BigBench),
        _ => Err(invalid_field("format", "say which format the file is in: jsonl, csv, glue_tsv or bigbench")),
    }
}

fn parse_split(s: &str) -> ApiResult<Split> {
    match s {
        "train" => Ok(Split::Train),
        "validation" | "dev" => Ok(Split::Validation),
        "test" => Ok(Split::Test),
        other => Err(invalid_field("split", format!("unknown split {other:?}; use train, validation or test"))),
    }
}

/// Upload a dataset; it is validated completely before anything is stored.
#[utoipa::path(post, path = "/datasets", tag = "datasets", request_body(content = UploadDataset, content_type = "multipart/form-data"),
    responses((status = 201, body = DatasetBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload(State(st): State<AppState>, Auth(team): Auth, mp: Multipart) -> ApiResult<(StatusCode, Json<DatasetBody>)> {
    let form = read_form(mp, st.config.max_upload_bytes).await?;
    let file = form.file.clone().ok_or_else(|| invalid_field("file", "no file was attached (multipart field `file`)"))?;
    if file.is_empty() {
        return Err(invalid_field("file", "the file is empty"));
    }
    let name = form.name.clone().or_else(|| form.file_name.clone()).ok_or_else(|| invalid_field("name", "give the dataset a name"))?;
    if name.len() > 200 || name.chars().any(char::is_control) {
        return Err(invalid_field("name", "1 to 200 printable characters"));
    }
    let format = pick_format(&form)?;
    let family_raw = form.task_family.clone().unwrap_or_else(|| "classification".into());
    let family = TaskFamily::parse(&family_raw).ok_or_else(|| {
        invalid_field(
            "task_family",
            format!("unknown task family {family_raw:?}; use classification, regression, summarization or instruction"),
        )
    })?;
    let mut opts = ParseOptions::new(format, family);
    opts.glue_task = form.glue_task.clone();
    opts.text_column = form.text_column.clone();
    opts.text_pair_column = form.text_pair_column.clone();
    opts.label_column = form.label_column.clone();
    opts.default_split = form.split.as_deref().map(parse_split).transpose()?;

    let parse_input = file.clone();
    let parse_opts = opts.clone();
    let parsed: ParsedDataset = tokio::task::spawn_blocking(move || dataset::parse(&parse_input, &parse_opts))
        .await
        .map_err(AppError::internal)?
        .map_err(|invalid| {
            // Line 0 is the file as a whole.
            let first = invalid
                .errors
                .first()
                .map(|e| if e.line > 0 { format!("line {}: {}", e.line, e.message) } else { e.message.clone() })
                .unwrap_or_default();
            AppError::unprocessable("invalid_dataset", format!("the file was rejected; first problem: {first}"))
                .with_details(json!({ "errors": invalid.errors }))
        })?;

    let id = Uuid::new_v4();
    let ext = match format {
        DataFormat::Jsonl => "jsonl",
        DataFormat::Csv => "csv",
        DataFormat::GlueTsv => "tsv",
        DataFormat::BigBench => "json",
    };
    let uri = format!("datasets/{}/{id}.{ext}", team.id);
    let new = NewDataset::from_parsed(id, Some(team.id), name, &opts, &parsed, &file, uri.clone())?;
    st.artifacts.put(&uri, file).await?;
    match datasets::insert(&st.pool, &new).await {
        Ok(row) => Ok((StatusCode::CREATED, Json(DatasetBody { dataset: row }))),
        Err(e) => {
            if let Err(cleanup) = st.artifacts.delete(&uri).await {
                tracing::error!("could not remove {uri} after a failed insert: {cleanup}");
            }
            Err(e.into())
        }
    }
}

/// The team's datasets, then the public benchmark datasets (`visibility: public`).
#[utoipa::path(get, path = "/datasets", tag = "datasets", responses((status = 200, body = DatasetList)))]
pub async fn list(State(st): State<AppState>, Auth(team): Auth) -> ApiResult<Json<DatasetList>> {
    Ok(Json(DatasetList { datasets: datasets::list(&st.pool, team.id).await? }))
}

/// A dataset (yours or public) with its validation report.
#[utoipa::path(get, path = "/datasets/{id}", tag = "datasets", params(("id" = String, Path)),
    responses((status = 200, body = DatasetBody), (status = 404, body = ErrorBody)))]
pub async fn get(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<Json<DatasetBody>> {
    let id = super::parse_id(&id, "dataset")?;
    let dataset = datasets::get(&st.pool, team.id, id).await.map_err(not_found)?;
    Ok(Json(DatasetBody { dataset }))
}

/// Delete one of your datasets that no run uses (public datasets are read-only: 403).
#[utoipa::path(delete, path = "/datasets/{id}", tag = "datasets", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(State(st): State<AppState>, Auth(team): Auth, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = super::parse_id(&id, "dataset")?;
    let uri = datasets::delete(&st.pool, team.id, id).await.map_err(not_found)?;
    st.artifacts.delete(&uri).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RowsQuery {
    /// train, validation or test: keep one split.
    split: Option<String>,
}

/// The dataset's examples exactly as every run on it sees them (the stored file parsed with
/// its options: same rows, same split assignment, same order), as JSON lines
/// `{"text_a", "text_b", "target": {"class" | "score" | "text": ...}, "split"}`; `split`
/// keeps one split. What a reference implementation needs to train on the same data.
#[utoipa::path(get, path = "/datasets/{id}/rows", tag = "datasets", params(("id" = String, Path), RowsQuery),
    responses((status = 200, description = "JSON lines `{text_a, text_b, target, split}`", content_type = "application/x-ndjson", body = String),
              (status = 404, body = ErrorBody)))]
pub async fn rows(
    State(st): State<AppState>,
    Auth(team): Auth,
    Path(id): Path<String>,
    super::QueryParams(q): super::QueryParams<RowsQuery>,
) -> ApiResult<axum::response::Response> {
    let id = super::parse_id(&id, "dataset")?;
    let split = match q.split.as_deref() {
        None => None,
        Some(s) => Some(
            Split::ALL
                .into_iter()
                .find(|x| x.as_str() == s)
                .ok_or_else(|| super::runs::field_error("split", format!("unknown split {s:?}; use train, validation or test")))?,
        ),
    };
    let row = datasets::get(&st.pool, team.id, id).await.map_err(not_found)?;
    let opts: ParseOptions = serde_json::from_value(row.parse_options.0.clone()).map_err(AppError::internal)?;
    let bytes = st.artifacts.get(&row.uri).await?;
    let parsed = tokio::task::spawn_blocking(move || dataset::parse(&bytes, &opts))
        .await
        .map_err(AppError::internal)?
        .map_err(|e| AppError::internal(format!("the stored dataset no longer parses: {e}")))?;
    let mut body = String::new();
    for ex in parsed.examples.iter().filter(|e| split.is_none_or(|s| e.split == s)) {
        body.push_str(&serde_json::to_string(ex).map_err(AppError::internal)?);
        body.push('\n');
    }
    let filename = format!("rankfit-dataset-{}{}.jsonl", row.id, split.map(|s| format!("-{}", s.as_str())).unwrap_or_default());
    Ok(super::file_response("application/x-ndjson", "attachment", &filename, body))
}

fn not_found(e: rankfit_store::StoreError) -> AppError {
    match e {
        rankfit_store::StoreError::NotFound => AppError::not_found("dataset"),
        other => other.into(),
    }
}
