//! The `custos` command-line tool.
//!
//! Exit codes: 0 success; 1 the run failed (a sink or source error, too many quarantined
//! rows, a broken invariant, Ctrl-C); 2 invalid config or command-line usage; 3 not signed in
//! or not allowed.

mod access;
mod admin;
mod detect;
mod init;
mod keys;
mod output;
mod remote;
mod scan;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use custos_app::AppError;
use custos_engine::{CancellationToken, Progress, RunOutcome, RunStatus};
use custos_policy::{Action, Resource};

use crate::access::with_project;

/// custos: a secure ETL engine for pipelines that carry personal data.
///
/// Pipelines are TOML files of named sources, transforms and sinks. Bad rows go to a
/// quarantine file (mode 0600) with their file, line and reason; sinks are written to
/// temporary files and committed together, so a failed run leaves earlier outputs untouched.
///
/// Commands act as the user whose API token is in CUSTOS_TOKEN (or the file named by
/// CUSTOS_TOKEN_FILE); Cedar policies decide what each user may do, and every decision is
/// recorded in the tamper-evident audit log.
///
/// Exit codes: 0 success, 1 run failed, 2 invalid config or usage, 3 not signed in or not
/// allowed.
#[derive(Debug, Parser)]
#[command(
    name = "custos",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// State directory: run records, quarantine files, keystore, users and the audit log
    /// [default: nearest `.custos` in the current directory or its parents, else ./.custos]
    #[arg(long, global = true, env = "CUSTOS_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a working example project (pipeline, sample data, state directory).
    ///
    /// In a project without users it also creates the first admin (role security_admin) and
    /// prints its API token once.
    Init {
        /// Directory to create the project in.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Overwrite example files that already exist.
        #[arg(long)]
        force: bool,
        /// Only the state directory, policies and first admin: no example files or keys.
        #[arg(long)]
        no_example: bool,
        /// Write the first admin's token to this file (mode 0600) instead of printing it.
        #[arg(long, value_name = "FILE")]
        admin_token_file: Option<PathBuf>,
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
        /// A .csv, .jsonl or .parquet file, or a pipeline .toml (with CUSTOS_SERVER: a file
        /// under the server's data roots, or a registered pipeline's name).
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
    /// Run the PII detectors outside a pipeline: `custos detect eval TRUTH.jsonl` scores
    /// them on labelled text.
    Detect {
        #[command(subcommand)]
        command: detect::DetectCommand,
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
    /// Manage users (principals) and their roles.
    Users {
        #[command(subcommand)]
        command: admin::UsersCommand,
    },
    /// Rotate API tokens.
    Tokens {
        #[command(subcommand)]
        command: admin::TokensCommand,
    },
    /// Time-bound grants: the way to decrypt personal data or destroy keys.
    Grants {
        #[command(subcommand)]
        command: admin::GrantsCommand,
    },
    /// Verify, export and read the tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: admin::AuditCommand,
    },
    /// Serve the project over HTTPS (the JSON API under /v1).
    ///
    /// The server alone holds the keystore passphrase, users, policies and audit log; clients
    /// need only their API tokens. Pipelines are registered with the server and run by name.
    /// Logs are JSON lines on stderr. SIGINT/SIGTERM shut it down gracefully.
    Serve {
        /// Server config file: listen address, TLS certificate and key by reference, data
        /// roots, secret allowlist.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Sign in to the server in CUSTOS_SERVER: checks the token and keeps it (mode 0600) for
    /// later commands against that server.
    Login {
        /// Read the token from standard input (else CUSTOS_TOKEN or CUSTOS_TOKEN_FILE).
        #[arg(long)]
        token_stdin: bool,
    },
    /// Pipelines registered with the server (server mode).
    Pipelines {
        #[command(subcommand)]
        command: remote::PipelinesCommand,
    },
    /// The server's run jobs (server mode).
    Jobs {
        #[command(subcommand)]
        command: remote::JobsCommand,
    },
    /// Your second factor (TOTP) for privileged actions on the server (server mode). With it
    /// enrolled, privileged commands read the current code from CUSTOS_OTP.
    Mfa {
        #[command(subcommand)]
        command: remote::MfaCommand,
    },
    /// The policies and settings the server keeps (server mode).
    Policies {
        #[command(subcommand)]
        command: remote::PoliciesCommand,
    },
}

impl Command {
    /// The command's name, for messages.
    fn name(&self) -> &'static str {
        match self {
            Command::Init { .. } => "init",
            Command::Validate { .. } => "validate",
            Command::Scan { .. } => "scan",
            Command::Detect { .. } => "detect",
            Command::Run(_) => "run",
            Command::Runs { .. } => "runs",
            Command::Keys { .. } => "keys",
            Command::Users { .. } => "users",
            Command::Tokens { .. } => "tokens",
            Command::Grants { .. } => "grants",
            Command::Audit { .. } => "audit",
            Command::Serve { .. } => "serve",
            Command::Login { .. } => "login",
            Command::Pipelines { .. } => "pipelines",
            Command::Jobs { .. } => "jobs",
            Command::Mfa { .. } => "mfa",
            Command::Policies { .. } => "policies",
        }
    }
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
pub(crate) const EXIT_INVALID: u8 = 2;
/// Exit code for a failed sign-in or a denied action.
pub(crate) const EXIT_DENIED: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_INVALID } else { 0 });
        }
    };
    if matches!(cli.command, Command::Serve { .. }) {
        // A server logs JSON lines (one per request, with its request id) at info.
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("CUSTOS_LOG")
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("CUSTOS_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
    }
    match real_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // The application layer's errors carry their exit code; anything else failed.
            let code = access::app_error(&e).map_or(EXIT_RUN_FAILED, AppError::exit_code);
            if code == EXIT_DENIED {
                eprintln!("custos: {e}");
            } else {
                eprintln!("custos: error: {e:#}");
            }
            ExitCode::from(code)
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
    let state = state_dir(&cli);
    let local_only = matches!(
        cli.command,
        Command::Init { .. } | Command::Validate { .. } | Command::Serve { .. }
    );
    // Detector evaluation reads only the caller's own labelled file and no project state,
    // so it runs here even with a server.
    if let (Some(_), Command::Detect { command }) = (remote::server(), &cli.command) {
        return detect::run(command);
    }
    if let Some(server) = remote::server()
        && !local_only
    {
        return match remote::dispatch(&server, &cli.command)? {
            Some(code) => Ok(code),
            None => {
                eprintln!(
                    "custos: error: `custos {}` (this form of it) is not available through a server yet; unset CUSTOS_SERVER to use a local project",
                    cli.command.name()
                );
                Ok(EXIT_INVALID)
            }
        };
    }
    match &cli.command {
        // Locally, the keystore holder issues tickets (the first admin's, before a server
        // that requires them starts).
        Command::Mfa {
            command:
                remote::MfaCommand::Ticket {
                    user,
                    valid_hours,
                    json,
                },
        } => with_project(&state, None, |p, me| async move {
            let req = custos_app::NewTicket {
                valid_hours: Some(*valid_hours),
            };
            let t = p.mfa_ticket(&me, user, &req).await?;
            admin::print_ticket(&t.user, &t.ticket, &t.expires, *json);
            Ok(0)
        }),
        Command::Login { .. }
        | Command::Pipelines { .. }
        | Command::Jobs { .. }
        | Command::Mfa { .. }
        | Command::Policies { .. } => {
            eprintln!(
                "custos: error: `custos {}` talks to a server: set CUSTOS_SERVER=https://HOST:PORT",
                cli.command.name()
            );
            Ok(EXIT_INVALID)
        }
        Command::Init {
            dir,
            force,
            no_example,
            admin_token_file,
        } => {
            init::init(dir, *force, *no_example, admin_token_file.as_deref())?;
            Ok(0)
        }
        Command::Validate {
            file,
            json,
            deny_warnings,
        } => validate(&state, file, *json, *deny_warnings),
        Command::Run(args) => run(&state, args),
        Command::Scan {
            target,
            sample,
            seed,
            json,
            suggest,
        } => with_project(&state, None, |p, me| async move {
            let scans = p.scan_local(&me, target, *sample, *seed).await?;
            scan::print(&scans, *json, *suggest)?;
            Ok(0)
        }),
        Command::Detect { command } => with_project(&state, None, |p, me| async move {
            // A labelled corpus is personal data like any dataset.
            let resource = Resource::Dataset {
                name: command.dataset(),
            };
            p.authorized(&me, Action::ReadDataset, &resource, async {
                detect::run(command).map_err(|e| AppError::Invalid(format!("{e:#}")))
            })
            .await
            .map_err(Into::into)
        }),
        Command::Keys { keystore, command } => {
            with_project(&state, keystore.clone(), |p, me| async move {
                keys::run(&p, &me, command).await
            })
        }
        Command::Users { command } => with_project(&state, None, |p, me| async move {
            admin::users(&p, &me, command).await
        }),
        Command::Tokens { command } => with_project(&state, None, |p, me| async move {
            admin::tokens(&p, &me, command).await
        }),
        Command::Grants { command } => with_project(&state, None, |p, me| async move {
            admin::grants(&p, &me, command).await
        }),
        Command::Audit { command } => with_project(&state, None, |p, me| async move {
            admin::audit(&p, &me, command).await
        }),
        Command::Serve { config } => serve(config),
        Command::Runs { command } => {
            // Run records hold counts, paths and hashes, never data: any signed-in user.
            with_project(&state, None, |p, me| async move { runs(&p, &me, command) })
        }
    }
}

fn serve(config: &Path) -> Result<u8> {
    let cfg = match custos_server::ServerConfig::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("custos: error: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    match runtime()?.block_on(custos_server::run(&cfg)) {
        Ok(()) => Ok(0),
        Err(custos_server::ServerError::Config(e)) => {
            eprintln!("custos: error: server config: {e}");
            Ok(EXIT_INVALID)
        }
        Err(custos_server::ServerError::App(e)) => {
            eprintln!("custos: error: {e}");
            Ok(e.exit_code())
        }
        Err(e) => Err(e.into()),
    }
}

fn runs(p: &custos_app::Project, me: &custos_app::Principal, command: &RunsCommand) -> Result<u8> {
    if !p.state_dir().join("state.db").is_file() {
        eprintln!(
            "custos: no runs recorded in {} (run a pipeline first, or pass --state-dir)",
            p.state_dir().display()
        );
        return Ok(EXIT_INVALID);
    }
    match command {
        RunsCommand::List { limit, json } => {
            let runs = p.runs(me, *limit)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                output::print_runs(&runs);
            }
            Ok(0)
        }
        RunsCommand::Show { id, json } => {
            let r = p.run_record(me, id)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                output::print_run(&r);
            }
            Ok(0)
        }
    }
}

fn load(file: &Path) -> Result<custos_config::Loaded, u8> {
    custos_config::load(file).map_err(|e| {
        eprintln!("custos: error: {e}");
        EXIT_INVALID
    })
}

fn validate(state: &Path, file: &Path, json: bool, deny_warnings: bool) -> Result<u8> {
    let loaded = match load(file) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let mut diags = runtime()?.block_on(custos_engine::check(&loaded, state, None));
    // The project's access policies are part of what runs: check them against the schema.
    let policies = access::policy_dir(state);
    let problem = match custos_policy::PolicyEngine::load(&policies) {
        Err(e) => Some((
            custos_config::Severity::Error,
            format!("access policies: {e}"),
        )),
        // Keys are used by every protecting run: a set without any permit for it denies them.
        Ok(engine) if !engine.may_permit(Action::UseKey) => Some((
            custos_config::Severity::Warning,
            format!(
                "access policies: {}",
                custos_app::authz::USE_KEY_HINT
                    .trim_start_matches(" (")
                    .trim_end_matches(')')
            ),
        )),
        Ok(_) => None,
    };
    if let Some((severity, message)) = problem {
        diags.push(custos_config::Diagnostic {
            severity,
            file: policies.clone(),
            line: 0,
            column: 0,
            key: String::new(),
            message,
        });
    }
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

fn run(state: &Path, args: &RunArgs) -> Result<u8> {
    let loaded = match load(&args.file) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    with_project(state, None, |p, me| async move {
        // Ctrl-C cancels the run: every sink is aborted and nothing is committed.
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        let progress = Arc::new(Progress::default());
        let show_bar = !args.quiet && !args.json && std::io::stderr().is_terminal();
        let bar = show_bar.then(|| output::progress_bar(progress.clone()));
        let outcome = p.run_local(&me, &loaded, progress, cancel).await;
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
            RunOutcome::Ran(summary) => report_summary(&summary, args),
        }
    })
}

/// Prints a run's summary (table, JSON or nothing, as asked) and returns the exit code: 0
/// when it succeeded, 3 when a decrypt was denied, else 1. Local and server runs alike.
pub(crate) fn report_summary(summary: &custos_engine::RunSummary, args: &RunArgs) -> Result<u8> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(summary)?);
    } else if !args.quiet {
        output::print_summary(summary);
    }
    if summary.status == RunStatus::Succeeded {
        return Ok(0);
    }
    if args.quiet || args.json {
        eprintln!(
            "custos: run {} {}: {}",
            summary.run_id,
            summary.status,
            summary.error.as_deref().unwrap_or("unknown error")
        );
    }
    Ok(
        if summary.failure == Some(custos_engine::RunFailure::Denied) {
            EXIT_DENIED
        } else {
            EXIT_RUN_FAILED
        },
    )
}
