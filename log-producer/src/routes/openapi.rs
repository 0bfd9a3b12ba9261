//! The OpenAPI document, served at `/producer/v3/api-docs` with Swagger UI at
//! `/producer/swagger-ui/`.

use super::{health, ingest};
use log_common::error::{ErrorBody, UnavailableBody};
use log_common::event::{FieldError, Level, LogEvent};
use log_common::http::{ComponentHealth, HealthReport};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "log-producer", description = "When `API_KEYS` or `API_KEYS_FILE` is set, every ingest/query endpoint needs `X-API-Key: <key>` or `Authorization: Bearer <key>` (401 otherwise); health, metrics and these docs stay open. Ingest log events into Kafka. Every 2xx from `/ingest`, `/batch` and `/bulk` means Kafka acknowledged the event (acks=all); `/ingest/async` answers 202 once the event is queued in the producer."),
    paths(ingest::ingest, ingest::ingest_async, ingest::batch, ingest::bulk, health::liveness, health::readiness),
    components(schemas(LogEvent, Level, ingest::IngestResponse, ingest::BatchResponse, ingest::BatchItemError,
        ErrorBody, UnavailableBody, FieldError, HealthReport, ComponentHealth)),
    tags((name = "ingest", description = "Send log events"), (name = "health", description = "Liveness and readiness"))
)]
pub struct ApiDoc;
