use clap::Parser;
use log_producer::{settings::Settings, startup::Application};

/// Each request parses, validates and re-encodes thousands of small documents: mimalloc
/// is cheaper per allocation than glibc's allocator, as measured in the consumer.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    log_common::telemetry::init("log-producer");
    tracing::info!(?settings, "effective configuration");
    let app = Application::build(settings).await?;
    app.run_until_stopped(log_common::shutdown::signal()).await
}
