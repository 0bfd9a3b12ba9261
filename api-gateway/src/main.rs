use api_gateway::{settings::Settings, startup::Application};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    log_common::telemetry::init("api-gateway");
    tracing::info!(?settings, "effective configuration");
    let app = Application::build(settings).await?;
    app.run_until_stopped(log_common::shutdown::signal()).await
}
