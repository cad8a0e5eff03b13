//! The `mq9` command: broker, local development environment, the Kubernetes operator and its
//! CRDs, the CLI client and the benchmark.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "mq9", version, about = "Mailboxes for AI agents over NATS")]
struct Cli {
    /// Log format.
    #[arg(long, env = "MQ9_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(flatten)]
    client: mq9::cli::ClientArgs,
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
    /// Run the Kubernetes operator: controllers for Broker, Mailbox and Broadcast.
    Operator(mq9::operator::OperatorArgs),
    /// Print the CustomResourceDefinitions (what `crds/mq9.yaml` holds).
    Crds,
    /// Measure mq9 against the NATS request/reply ceiling and JetStream (own servers, loopback).
    Bench(mq9::bench::BenchArgs),
    #[command(flatten)]
    Client(mq9::cli::Command),
}

/// Logs go to stderr at `MQ9_LOG` (default `default_level`).
fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MQ9_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Bench's log level: the servers' connections close at the end of every figure, and
/// async-nats reports that at INFO, which is noise there.
const BENCH_LOG_LEVEL: &str = "info,async_nats=warn";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout as clap prints them.
        Err(e) if !e.use_stderr() => e.exit(),
        // Bad arguments: one line, like every other error.
        Err(e) => {
            eprintln!("mq9: {}", mq9::cli::usage_error_line(&e));
            return std::process::ExitCode::from(2);
        }
    };
    // The client's stderr is for its one error line: its logs (the NATS client's connection
    // events, for instance) are off unless MQ9_LOG asks for them.
    let default_level = match cli.command {
        Commands::Client(_) => "off",
        Commands::Crds => "warn",
        Commands::Broker(_) | Commands::Dev(_) | Commands::Operator(_) => "info",
        Commands::Bench(_) => BENCH_LOG_LEVEL,
    };
    init_logging(cli.log_format, default_level);
    let result = match cli.command {
        Commands::Broker(config) => mq9::broker::run(config, mq9::shutdown_signal())
            .await
            .map_err(Into::into),
        Commands::Dev(args) => mq9::dev::run(args).await,
        Commands::Operator(args) => mq9::operator::run(args, mq9::shutdown_signal()).await,
        Commands::Crds => {
            print!("{}", mq9::crd::yaml());
            Ok(())
        }
        Commands::Bench(args) => mq9::bench::run(args).await,
        Commands::Client(command) => mq9::cli::run(cli.client, command).await,
    };
    exit_code(result)
}

fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mq9: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
