//! The OpenAPI 3.1 description of `/api/v1`, served at `/api/v1/openapi.json`.
//!
//! Generated, not written: every route is registered through `utoipa_axum`'s
//! `OpenApiRouter` from a handler annotated with `#[utoipa::path]`, whose request and
//! response types derive `ToSchema`. A route cannot be served without being documented,
//! and a documented response is the type the handler returns.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rankfit API",
        description = "Adaptive-rank LoRA fine-tuning: datasets, suites, runs, studies, rank maps, leaderboards with intervals, public benchmarks, adapters."
    ),
    servers((url = "/api/v1")),
    security(("bearer" = [])),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody)),
    tags(
        (name = "teams", description = "Teams and their tokens"),
        (name = "datasets", description = "Uploads, validation reports, GLUE suites, public benchmark datasets"),
        (name = "runs", description = "Queue, follow and cancel runs; metrics, rank maps, predictions"),
        (name = "adapters", description = "Trained adapters (PEFT, plain LoRA, merged)"),
        (name = "studies", description = "Grids of runs and their comparisons"),
        (name = "leaderboards", description = "Cells with intervals; publishing and public boards"),
        (name = "catalog", description = "Base models, task families, methods"),
        (name = "fleet", description = "Workers and the queue (admin teams)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}
