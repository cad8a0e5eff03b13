//! `cargo bench`: the same measurement as `mq9 bench` (README, "Performance"), for those who
//! reach for cargo. Arguments after `--` are `mq9 bench`'s: `cargo bench -- --quick`.
//!
//! `cargo test --all-targets` also builds and starts this target (without `--bench`); then it
//! only says how to run it, so the test suite does not run a 12-minute benchmark.

use clap::Parser;

#[derive(Parser)]
#[command(name = "cargo bench --bench mq9 --")]
struct Command {
    #[command(flatten)]
    bench: mq9::bench::BenchArgs,
}

fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    let Some(flag) = args.iter().position(|a| a == "--bench") else {
        println!("mq9 benchmark: run it with `cargo bench` (or `mq9 bench`)");
        return std::process::ExitCode::SUCCESS;
    };
    args.remove(flag);
    let command = Command::parse_from(args);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(mq9::bench::run(command.bench)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mq9 bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
