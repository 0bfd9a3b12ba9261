use clap::Parser;
use log_consumer::{settings::Settings, startup::Application};

/// Building blocks allocates and frees many short strings and buffers a batch: with
/// glibc's allocator that was a seventh of the consumer's CPU (`load-test/drain.sh`
/// with `PERF=1`), and its freed memory came back slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    log_common::telemetry::init("log-consumer");
    tracing::info!(?settings, "effective configuration");
    let app = Application::build(settings).await?;
    app.run_until_stopped(log_common::shutdown::signal()).await
}
