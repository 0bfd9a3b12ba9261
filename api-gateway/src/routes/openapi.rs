//! The OpenAPI document, served at `/gateway/v3/api-docs` with Swagger UI at
//! `/gateway/swagger-ui/`.

use super::{admin, health, query, tail};
use crate::api::dead_letters::{
    BulkReplayResult, DeadLetterCounts, DeadLetterDetail, DeadLetterEntry, DeadLetterPage,
    PayloadEncoding, ReasonKindCount, ReplayAudit, ReplayResult,
};
use crate::api::{
    DurationPercentiles, Histogram, HistogramBucket, HourlyCount, LogPage, SourceCount, Stats,
    TimeRange,
};
use crate::params::dead_letters::{BulkReplayRequest, ReasonKindName, ReplayBody};
use log_common::error::{ErrorBody, UnavailableBody};
use log_common::event::{FieldError, Level, LogEvent};
use log_common::http::{ComponentHealth, HealthReport};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "api-gateway", description = "When `API_KEYS` or `API_KEYS_FILE` is set, every ingest/query endpoint needs `X-API-Key: <key>` or `Authorization: Bearer <key>` (401 otherwise); health, metrics and these docs stay open. Query stored log events. Answers are cached in Redis: a window that reaches into the last 5 minutes for 5 s, a closed window for 5 min, stats for 30 s. The admin endpoints (`/gateway/api/admin/dead-letters…`) need an admin key (`ADMIN_API_KEYS`) when API keys are on: 401 without a valid key, 403 with a key that is not an admin key."),
    paths(query::logs, query::search, query::stats, query::histogram, query::log_by_id, tail::tail, health::liveness, health::readiness,
        admin::list, admin::counts, admin::detail, admin::replays, admin::replay, admin::replay_many),
    components(schemas(LogPage, LogEvent, Level, Stats, Histogram, HistogramBucket, TimeRange, SourceCount, HourlyCount, DurationPercentiles,
        ErrorBody, UnavailableBody, FieldError, HealthReport, ComponentHealth,
        DeadLetterPage, DeadLetterEntry, DeadLetterDetail, PayloadEncoding, DeadLetterCounts, ReasonKindCount, ReplayResult, BulkReplayResult, ReplayAudit, BulkReplayRequest, ReplayBody, ReasonKindName)),
    tags((name = "query", description = "Search and page through log events"), (name = "health", description = "Liveness and readiness"),
        (name = "admin", description = "Dead letters: list, counts, inspect, replay through the producer, audit"))
)]
pub struct ApiDoc;
