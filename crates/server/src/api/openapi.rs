//! The OpenAPI 3.1 description of `/api/v1`, served at `/api/v1/openapi.json`.

use axum::Json;
use serde_json::{json, Value};

fn op(summary: &str, tag: &str) -> Value {
    json!({ "summary": summary, "tags": [tag], "responses": { "200": { "description": "OK" }, "default": { "$ref": "#/components/responses/Error" } } })
}

fn with_params(mut v: Value, params: &[(&str, &str, bool)]) -> Value {
    v["parameters"] =
        params.iter().map(|(name, loc, req)| json!({ "name": name, "in": loc, "required": req, "schema": { "type": "string" } })).collect();
    v
}

pub async fn document() -> Json<Value> {
    let id = [("id", "path", true)];
    Json(json!({
        "openapi": "3.1.0",
        "info": { "title": "rankfit API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Adaptive-rank LoRA fine-tuning: datasets, runs, studies, rank maps, leaderboards with intervals, adapters." },
        "servers": [{ "url": "/api/v1" }],
        "security": [{ "bearer": [] }],
        "paths": {
            "/me": { "get": op("The team of the token", "teams") },
            "/teams": { "post": op("Create a team and its first token (admin)", "teams"), "get": op("List teams (admin)", "teams") },
            "/tokens": { "post": op("Issue another token for your team", "teams") },
            "/tokens/{id}": { "delete": with_params(op("Revoke a token", "teams"), &id) },
            "/datasets": {
                "post": {
                    "summary": "Upload and validate a dataset (multipart: file, name, format, task_family, glue_task, text_column, text_pair_column, label_column, split)",
                    "tags": ["datasets"],
                    "requestBody": { "content": { "multipart/form-data": { "schema": { "type": "object", "required": ["file"],
                        "properties": { "file": { "type": "string", "format": "binary" }, "name": { "type": "string" },
                            "format": { "enum": ["jsonl", "csv", "glue_tsv", "bigbench"] },
                            "task_family": { "enum": ["classification", "regression", "summarization", "instruction"] },
                            "glue_task": { "type": "string" }, "split": { "enum": ["train", "validation", "test"] } } } } } },
                    "responses": { "201": { "description": "Created" }, "413": { "$ref": "#/components/responses/Error" }, "422": { "$ref": "#/components/responses/Error" } }
                },
                "get": op("List your datasets", "datasets")
            },
            "/datasets/{id}": { "get": with_params(op("Get a dataset with its validation report", "datasets"), &id),
                                "delete": with_params(op("Delete a dataset no run uses", "datasets"), &id) },
            "/suites": {
                "post": {
                    "summary": "Register a GLUE folder as one suite: one dataset per task present (dev file = test split, validation carved from train, each task's metric), all or nothing; problems carry their file and line",
                    "tags": ["datasets"],
                    "requestBody": { "content": { "multipart/form-data": { "schema": { "type": "object", "required": ["file"],
                        "properties": { "file": { "type": "array", "items": { "type": "string", "format": "binary" }, "description": "the folder's files, each named by its path (CoLA/train.tsv), or one .zip" },
                            "name": { "type": "string" }, "kind": { "enum": ["glue"] } } } } } },
                    "responses": { "201": { "description": "Created: the suite and its datasets" }, "409": { "$ref": "#/components/responses/Error" }, "413": { "$ref": "#/components/responses/Error" }, "422": { "$ref": "#/components/responses/Error" } }
                },
                "get": op("Your suites, then the public ones", "datasets")
            },
            "/suites/{id}": { "get": with_params(op("A suite (yours or public) with its datasets and report", "datasets"), &id) },
            "/datasets/{id}/rows": { "get": with_params(op("The examples as every run sees them (same rows, splits, order), as JSON lines; split=train|validation|test keeps one", "datasets"), &[("id", "path", true), ("split", "query", false)]) },
            "/runs": {
                "post": { "summary": "Queue a run (its estimate is stored with it); dry_run=true returns the estimate only", "tags": ["runs"],
                          "parameters": [{ "name": "dry_run", "in": "query", "required": false, "description": "true: validate and return the estimate (steps, time, peak memory, basis, error band) without creating anything", "schema": { "type": "boolean" } }],
                          "requestBody": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/CreateRun" } } } },
                          "responses": { "200": { "description": "Dry run: the estimate" }, "201": { "description": "Created" }, "422": { "$ref": "#/components/responses/Error" } } },
                "get": with_params(op("List runs", "runs"), &[("status", "query", false), ("method", "query", false), ("dataset_id", "query", false),
                        ("base_model", "query", false), ("budget", "query", false), ("limit", "query", false), ("offset", "query", false)])
            },
            "/runs/{id}": { "get": with_params(op("Get a run with evaluations and artifacts", "runs"), &id) },
            "/runs/{id}/cancel": { "post": with_params(op("Cancel a queued or running run", "runs"), &id) },
            "/runs/{id}/metrics": { "get": with_params(op("All metric points", "runs"), &id) },
            "/runs/{id}/rank-map": { "get": with_params(op("Rank snapshots over time", "runs"), &id) },
            "/runs/{id}/artifacts": { "get": with_params(op("Artifacts of a run", "runs"), &id) },
            "/runs/{id}/events": { "get": with_params(op("Server-sent events (status, metrics, ranks, eval, checkpoint, log; and progress, without an id, whenever the worker's report changes); resumable with Last-Event-ID", "runs"), &[("id", "path", true), ("after", "query", false)]) },
            "/runs/{id}/adapter": { "get": with_params(op("Download the adapter: format=peft|lora|merged; streamed, with Content-Length, a strong ETag (the sha256; If-None-Match gives 304) and single byte ranges (Range: bytes=a-b, a-, -n; 206, or 416 when unsatisfiable)", "adapters"), &[("id", "path", true), ("format", "query", false)]) },
            "/runs/{id}/predictions": { "get": with_params(op("Per-example test predictions of the best-validation state: format=jsonl|csv", "runs"), &[("id", "path", true), ("format", "query", false)]) },
            "/runs/{id}/publish": { "post": with_params(op("Put the run (on a public dataset) on its public leaderboard; 409 for a private dataset", "leaderboards"), &id),
                                    "delete": with_params(op("Take the run off the public leaderboard", "leaderboards"), &id) },
            "/studies": {
                "post": { "summary": "Create a study: validate the whole grid (datasets x methods x budgets x seeds) and queue all its runs, or none; dry_run=true returns the study's estimate only", "tags": ["studies"],
                          "parameters": [{ "name": "dry_run", "in": "query", "required": false, "description": "true: validate and return the estimate (steps, time, peak memory, basis, error band) without creating anything", "schema": { "type": "boolean" } }],
                          "requestBody": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/StudySpec" } } } },
                          "responses": { "200": { "description": "Dry run: the estimate" }, "201": { "description": "Created" }, "409": { "$ref": "#/components/responses/Error" }, "422": { "$ref": "#/components/responses/Error" } } },
                "get": op("List your studies with progress", "studies")
            },
            "/studies/{id}": { "get": with_params(op("A study: progress with ETA, its grid of runs, and comparison cells (n, mean, std, 95% interval, difference vs LoRA, rank group)", "studies"), &id) },
            "/studies/{id}/cancel": { "post": with_params(op("Cancel every run of the study that has not finished", "studies"), &id) },
            "/studies/{id}/extend": { "post": with_params(op("Add budgets, seeds, methods or datasets; existing grid points are not rerun", "studies"), &id) },
            "/studies/{id}/table": { "get": with_params(op("The paper table (method x budget rows, dataset columns, mean ± std, Avg, best group): format=json|csv|md|tex", "studies"), &[("id", "path", true), ("format", "query", false)]) },
            "/studies/{id}/events": { "get": with_params(op("Server-sent `grid` events with the study's progress and grid until every run finished", "studies"), &id) },
            "/studies/{id}/publish": { "post": with_params(op("Publish the study: its runs on public datasets go on those datasets' public leaderboards", "leaderboards"), &id),
                                       "delete": with_params(op("Make the study private to the team again", "leaderboards"), &id) },
            "/public/leaderboards": { "get": with_params(op("Without dataset_id: every public dataset with its published runs and teams. With it: every team's published cells (team x method x model x budget) with the team's name, n, mean, std, 95% interval, differences vs the same team's LoRA, rank groups across teams", "leaderboards"),
                &[("dataset_id", "query", false)]) },
            "/models": { "get": op("Base models", "catalog") },
            "/tasks": { "get": op("Task families, methods, upload formats", "catalog") },
            "/leaderboards": { "get": with_params(op("Cells (method x model x budget) of a dataset aggregated over seeds, with intervals, differences vs LoRA and rank groups", "leaderboards"),
                &[("dataset_id", "query", true), ("study_id", "query", false), ("budget", "query", false), ("method", "query", false), ("base_model", "query", false)]) }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": { "Error": { "description": "Error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } } },
            "schemas": {
                "Error": { "type": "object", "properties": { "error": { "type": "object", "required": ["code", "message"],
                    "properties": { "code": { "type": "string" }, "message": { "type": "string" }, "details": {} } } } },
                "CreateRun": { "type": "object", "required": ["dataset_id", "method", "budget"], "properties": {
                    "dataset_id": { "type": "string", "format": "uuid" }, "base_model": { "type": "string" },
                    "method": { "enum": ["lora", "adalora", "salientlora", "alora", "rolora"] },
                    "budget": { "type": "integer", "minimum": 1, "maximum": 128, "description": "target average rank per adapted module" },
                    "seed": { "type": "integer" }, "name": { "type": "string" }, "priority": { "type": "integer" },
                    "max_attempts": { "type": "integer" }, "training": { "type": "object" }, "method_config": { "type": "object" },
                    "continue_from": { "type": "string", "format": "uuid" } } },
                "StudySpec": { "type": "object", "required": ["name", "dataset_ids", "methods", "budgets"], "properties": {
                    "name": { "type": "string" }, "dataset_ids": { "type": "array", "items": { "type": "string", "format": "uuid" } },
                    "methods": { "type": "array", "items": { "enum": ["lora", "adalora", "salientlora", "alora", "rolora"] } },
                    "budgets": { "type": "array", "items": { "type": "integer", "minimum": 1, "maximum": 128 } },
                    "seeds": { "description": "a count n (seeds 1..=n, default 3) or a list of seeds", "oneOf": [{ "type": "integer", "minimum": 1 }, { "type": "array", "items": { "type": "integer" } }] },
                    "base_model": { "type": "string" }, "training": { "type": "object" },
                    "method_config": { "type": "object", "description": "per-method overrides keyed by method id" },
                    "priority": { "type": "integer" } } }
            }
        }
    }))
}
