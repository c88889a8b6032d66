// async-graphql's merged schema is deep: the release build needs more room.
#![recursion_limit = "256"]
use global::config::{Args, ENV_PREFIX};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = shared::config::parse_args(ENV_PREFIX);
    let config = args.load().map_err(anyhow::Error::msg)?;
    let settings = config.validate().map_err(anyhow::Error::msg)?;
    let _telemetry = shared::telemetry::init("global", config.log_format);
    let app = global::build(settings).await?;
    shared::server::shutdown_signal().await;
    app.stop().await;
    Ok(())
}
