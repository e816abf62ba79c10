//! The `custos` command-line tool.
//!
//! Exit codes: 0 success; 1 the run failed (a sink or source error, too many quarantined
//! rows, a broken invariant, Ctrl-C); 2 invalid config or command-line usage.

mod init;
mod keys;
mod output;
mod scan;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use custos_engine::{Progress, RunOptions, RunOutcome, StateStore};

/// custos: a secure ETL engine for pipelines that carry personal data.
///
/// Pipelines are TOML files of named sources, transforms and sinks. Bad rows go to a
/// quarantine file (mode 0600) with their file, line and reason; sinks are written to
/// temporary files and committed together, so a failed run leaves earlier outputs untouched.
///
/// Exit codes: 0 success, 1 run failed, 2 invalid config or usage.
#[derive(Debug, Parser)]
#[command(
    name = "custos",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// State directory holding run records and quarantine files [default: nearest `.custos`
    /// in the current directory or its parents, else ./.custos]
    #[arg(long, global = true, env = "CUSTOS_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a working example project (pipeline, sample data, state directory).
    Init {
        /// Directory to create the project in.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Overwrite example files that already exist.
        #[arg(long)]
        force: bool,
    },
    /// Check a pipeline without running it: syntax, unknown keys, graph, schemas, SQL and rules.
    ///
    /// Reports every problem at once with file, line, column and key path. Exit code 2 when
    /// any error is found (or any warning, with --deny-warnings).
    Validate {
        /// Pipeline file.
        file: PathBuf,
        /// Print diagnostics as JSON.
        #[arg(long)]
        json: bool,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Find personal data: sample every column of a data file (or of a pipeline's sources),
    /// classify it with the PII detectors and recommend a protection.
    Scan {
        /// A .csv, .jsonl or .parquet file, or a pipeline .toml.
        target: PathBuf,
        /// Rows sampled per source (seeded reservoir over all rows).
        #[arg(long, default_value_t = 10_000)]
        sample: usize,
        /// Sampling seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Print a ready-to-paste `protect` transform instead of the table.
        #[arg(long, conflicts_with = "json")]
        suggest: bool,
    },
    /// Run a pipeline.
    ///
    /// Shows a progress bar on a terminal (rows, rows/s, bytes), then a summary with the row
    /// counts of every component. Exit code 1 when the run fails, 2 when the config is invalid.
    Run(RunArgs),
    /// Inspect recorded runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Manage keys in the local encrypted keystore.
    Keys {
        /// Keystore file [default: keystore.ck in the state directory].
        #[arg(long, env = "CUSTOS_KEYSTORE", value_name = "FILE")]
        keystore: Option<PathBuf>,
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Pipeline file.
    file: PathBuf,
    /// No progress bar and no summary (errors are still printed).
    #[arg(long, short)]
    quiet: bool,
    /// Print the run summary as JSON on stdout (implies no progress bar).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// List recent runs, newest first.
    List {
        /// How many runs to show.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one run: counts per component, input and output files with SHA-256.
    Show {
        /// Run id, or a unique prefix of it.
        id: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Exit code for a failed run.
const EXIT_RUN_FAILED: u8 = 1;
/// Exit code for an invalid config or usage.
const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_INVALID } else { 0 });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CUSTOS_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match real_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("custos: error: {e:#}");
            ExitCode::from(EXIT_RUN_FAILED)
        }
    }
}

fn state_dir(cli: &Cli) -> PathBuf {
    cli.state_dir
        .clone()
        .unwrap_or_else(custos_engine::default_state_dir)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn real_main(cli: Cli) -> Result<u8> {
    match &cli.command {
        Command::Init { dir, force } => {
            init::init(dir, *force)?;
            Ok(0)
        }
        Command::Validate {
            file,
            json,
            deny_warnings,
        } => validate(file, *json, *deny_warnings),
        Command::Run(args) => run(&cli, args),
        Command::Scan {
            target,
            sample,
            seed,
            json,
            suggest,
        } => scan::run(target, *sample, *seed, *json, *suggest),
        Command::Keys { keystore, command } => {
            let path = keystore
                .clone()
                .unwrap_or_else(|| state_dir(&cli).join("keystore.ck"));
            keys::run(path, command)
        }
        Command::Runs { command } => {
            let dir = state_dir(&cli);
            if !dir.join("state.db").is_file() {
                eprintln!(
                    "custos: no runs recorded in {} (run a pipeline first, or pass --state-dir)",
                    dir.display()
                );
                return Ok(EXIT_INVALID);
            }
            let store = StateStore::open(&dir)?;
            match command {
                RunsCommand::List { limit, json } => {
                    let runs = store.list(*limit)?;
                    if *json {
                        println!("{}", serde_json::to_string_pretty(&runs)?);
                    } else {
                        output::print_runs(&runs);
                    }
                    Ok(0)
                }
                RunsCommand::Show { id, json } => match store.get(id)? {
                    None => {
                        eprintln!("custos: no run with id \"{id}\"");
                        Ok(EXIT_INVALID)
                    }
                    Some(r) => {
                        if *json {
                            println!("{}", serde_json::to_string_pretty(&r)?);
                        } else {
                            output::print_run(&r);
                        }
                        Ok(0)
                    }
                },
            }
        }
    }
}

fn load(file: &Path) -> Result<custos_config::Loaded, u8> {
    custos_config::load(file).map_err(|e| {
        eprintln!("custos: error: {e}");
        EXIT_INVALID
    })
}

fn validate(file: &Path, json: bool, deny_warnings: bool) -> Result<u8> {
    let loaded = match load(file) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let diags = runtime()?.block_on(custos_engine::check(&loaded));
    let warnings = diags.0.len() - diags.error_count();
    if json {
        println!("{}", serde_json::to_string_pretty(&diags)?);
    } else {
        eprint!("{diags}");
        if diags.0.is_empty() {
            println!(
                "{}: ok ({} sources, {} transforms, {} sinks)",
                file.display(),
                loaded.config.sources.len(),
                loaded.config.transforms.len(),
                loaded.config.sinks.len()
            );
        } else {
            eprintln!(
                "{}: {} error(s), {warnings} warning(s)",
                file.display(),
                diags.error_count()
            );
        }
    }
    Ok(if diags.has_errors() || (deny_warnings && warnings > 0) {
        EXIT_INVALID
    } else {
        0
    })
}

fn run(cli: &Cli, args: &RunArgs) -> Result<u8> {
    let loaded = match load(&args.file) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let opts = RunOptions {
        state_dir: state_dir(cli),
    };
    let progress = Arc::new(Progress::default());
    let show_bar = !args.quiet && !args.json && std::io::stderr().is_terminal();
    let bar = show_bar.then(|| output::progress_bar(progress.clone()));
    let outcome = runtime()?.block_on(custos_engine::run(&loaded, &opts, progress.clone()));
    if let Some((pb, stop)) = bar {
        stop.store(true, Ordering::Relaxed);
        pb.finish_and_clear();
    }
    match outcome? {
        RunOutcome::Invalid(diags) => {
            eprint!("{diags}");
            eprintln!(
                "{}: {} error(s); nothing was run",
                args.file.display(),
                diags.error_count()
            );
            Ok(EXIT_INVALID)
        }
        RunOutcome::Ran(summary) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else if !args.quiet {
                output::print_summary(&summary);
            }
            if summary.status == "succeeded" {
                Ok(0)
            } else {
                if args.quiet || args.json {
                    eprintln!(
                        "custos: run {} {}: {}",
                        summary.run_id,
                        summary.status,
                        summary.error.as_deref().unwrap_or("unknown error")
                    );
                }
                Ok(EXIT_RUN_FAILED)
            }
        }
    }
}
