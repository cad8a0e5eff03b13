//! The `mq9` command: broker, local development environment (and, as they land, the operator,
//! the CLI client and the benchmark).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "mq9", version, about = "Mailboxes for AI agents over NATS")]
struct Cli {
    /// Log format.
    #[arg(long, env = "MQ9_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Commands {
    /// Serve the mq9 protocol: a NATS client of a running nats-server, mailboxes in RocksDB.
    Broker(mq9::config::BrokerConfig),
    /// Run nats-server and the broker together on 127.0.0.1, data in a local folder.
    Dev(mq9::dev::DevArgs),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MQ9_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Commands::Broker(config) => mq9::broker::run(config, mq9::shutdown_signal()).await,
        Commands::Dev(args) => mq9::dev::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mq9: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
